//! The Redis backend: limits shared by every replica of a scale-out deployment.
//!
//! Each operation is one Lua script (sent by EVALSHA, loaded on NOSCRIPT), and Redis runs a
//! script alone, so every read-check-write is atomic across replicas. Scripts read the time
//! from Redis (`TIME`), so replicas with skewed clocks still agree on rate limits, leases and
//! reservation expiry. Keys are `tenantry:lim:{TENANT}:...` (see `key.rs`); every key expires,
//! so an abandoned key never outlives its window or lease.
//!
//! Every call runs under a short timeout; a timeout or any Redis error is `Unavailable`, and
//! this module must never report one as allowed (tenancy law 4). A call that timed out may
//! still have run on the server; it then holds a reservation or lease until expiry, which errs
//! towards refusing, never towards overspending.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::LimitError;
use crate::rate::Decision;

/// Shared by every script: the Redis clock in microseconds, and integer formatting that Lua's
/// default number-to-string conversion (14 significant digits) would get wrong for timestamps.
const PRELUDE: &str = r"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function str(n)
  return string.format('%.0f', n)
end
";

/// GCRA, a port of `rate::gcra`.
/// KEYS: tat. ARGV: interval_us, burst.
/// Returns {allowed, remaining, reset_after_us, retry_after_us}.
const GCRA: &str = r"
local now = now_us()
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], str(new_tat), 'PX', str(ttl_ms))
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
";

/// Shared by the lease scripts: the set lives as long as its longest lease; only ever extended,
/// so a replica configured with shorter leases cannot cut another's short.
const LEASE_PRELUDE: &str = r"
local function extend_ttl(key, lease_us)
  local ms = math.ceil(lease_us / 1000)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, str(ms)) end
end
";

/// Concurrency lease: a sorted set of lease ids scored by expiry.
/// KEYS: leases. ARGV: max, lease_us, id. Returns {acquired, holders}.
const ACQUIRE: &str = r"
local now = now_us()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', str(now))
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], str(now + lease), ARGV[3])
extend_ttl(KEYS[1], lease)
return {1, n + 1}
";

/// Extends a live lease; a lease that has already expired stays expired (its slot may have
/// been given to someone else). KEYS: leases. ARGV: lease_us, id. Returns 1 if extended.
const REFRESH: &str = r"
local now = now_us()
local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if score == nil or score <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', str(now + lease), ARGV[2])
extend_ttl(KEYS[1], lease)
return 1
";

/// Shared by the budget scripts: releases the reservations whose expiry has passed.
/// A budget window is a hash (`used`, `reserved`, `r:ID` = amount) and a sorted set of
/// reservation ids by expiry.
const BUDGET_PRELUDE: &str = r"
local function expire_reservations(h, z, now)
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', str(now))
  for i = 1, #stale do
    local field = 'r:' .. stale[i]
    local amount = tonumber(redis.call('HGET', h, field))
    if amount then
      if amount ~= 0 then redis.call('HINCRBY', h, 'reserved', str(-amount)) end
      redis.call('HDEL', h, field)
    end
  end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', str(now)) end
end
local function counts(h)
  return tonumber(redis.call('HGET', h, 'used') or '0'), tonumber(redis.call('HGET', h, 'reserved') or '0')
end
";

/// KEYS: hash, zset. ARGV: amount, limit, ttl_us, id, key_ttl_ms.
/// Returns {reserved?, used, reserved} (the counts before a refused reservation).
const RESERVE: &str = r"
local now = now_us()
expire_reservations(KEYS[1], KEYS[2], now)
local used, reserved = counts(KEYS[1])
local amount = tonumber(ARGV[1])
if used + reserved + amount > tonumber(ARGV[2]) then
  return {0, used, reserved}
end
if amount ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1]) end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[2], str(now + tonumber(ARGV[3])), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {1, used, reserved + amount}
";

/// Replaces reservation ARGV[1] (if still live; an empty id names none) by ARGV[2] used.
/// KEYS: hash, zset. ARGV: id, actual, key_ttl_ms. Returns {was_live, used, reserved}.
const SETTLE: &str = r"
local now = now_us()
expire_reservations(KEYS[1], KEYS[2], now)
local live = 0
if ARGV[1] ~= '' then
  local field = 'r:' .. ARGV[1]
  local amount = tonumber(redis.call('HGET', KEYS[1], field))
  if amount then
    if amount ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved', str(-amount)) end
    redis.call('HDEL', KEYS[1], field)
    redis.call('ZREM', KEYS[2], ARGV[1])
    live = 1
  end
end
if tonumber(ARGV[2]) ~= 0 then redis.call('HINCRBY', KEYS[1], 'used', ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local used, reserved = counts(KEYS[1])
return {live, used, reserved}
";

/// KEYS: hash, zset. Returns {used, reserved} after releasing expired reservations.
const USAGE: &str = r"
local now = now_us()
expire_reservations(KEYS[1], KEYS[2], now)
local used, reserved = counts(KEYS[1])
return {used, reserved}
";

struct Scripts {
    gcra: Script,
    acquire: Script,
    refresh: Script,
    reserve: Script,
    settle: Script,
    usage: Script,
}

/// Compiled (hashed) once per process.
static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let plain = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    let lease = |body: &str| Script::new(&format!("{PRELUDE}{LEASE_PRELUDE}{body}"));
    let budget = |body: &str| Script::new(&format!("{PRELUDE}{BUDGET_PRELUDE}{body}"));
    Scripts {
        gcra: plain(GCRA),
        acquire: lease(ACQUIRE),
        refresh: lease(REFRESH),
        reserve: budget(RESERVE),
        settle: budget(SETTLE),
        usage: budget(USAGE),
    }
});

/// The replies of the budget scripts: `(flag, used, reserved)`.
pub(crate) type BudgetReply = (bool, i64, i64);

#[derive(Clone)]
pub(crate) struct RedisBackend {
    conn: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Prepares a connection without opening it: the first call connects, and while Redis is
    /// unreachable every call answers `Unavailable` (then reconnects on the next call), so a
    /// replica can start before Redis and refuses traffic until Redis is there.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, LimitError> {
        let client = redis::Client::open(url)
            .map_err(|e| LimitError::InvalidConfig(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Retrying inside one call only delays the refusal; the next call reconnects.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| LimitError::InvalidConfig(format!("redis: {e}")))?;
        Ok(Self { conn, timeout })
    }

    /// Runs a command or script under the timeout; every failure is `Unavailable`.
    async fn run<T, F>(&self, what: &str, call: F) -> Result<T, LimitError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(LimitError::Unavailable(format!("redis {what}: {e}"))),
            Err(_) => Err(LimitError::Unavailable(format!(
                "redis {what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        what: &str,
        invocation: ScriptInvocation<'_>,
    ) -> Result<T, LimitError> {
        let mut conn = self.conn.clone();
        self.run(
            what,
            async move { invocation.invoke_async(&mut conn).await },
        )
        .await
    }

    pub async fn ping(&self) -> Result<(), LimitError> {
        let mut conn = self.conn.clone();
        let reply: String = self
            .run("PING", async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(unexpected("PING", &reply))
        }
    }

    /// Deletes the rate and budget keys of one tenant and its users (`SCAN` in batches; the
    /// keys of one tenant share its hash tag).
    pub async fn forget_tenant(&self, tenant: &tenantry_core::TenantId) -> Result<(), LimitError> {
        for kind in ["rate", "budget"] {
            let pattern = format!("tenantry:lim:{{{tenant}}}:{kind}:*");
            let mut cursor: u64 = 0;
            loop {
                let mut conn = self.conn.clone();
                let pattern = pattern.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run("SCAN", async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(500)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                if !keys.is_empty() {
                    let mut conn = self.conn.clone();
                    let _: i64 = self
                        .run("DEL", async move {
                            redis::cmd("DEL").arg(&keys).query_async(&mut conn).await
                        })
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    pub async fn check_rate(
        &self,
        key: &str,
        interval_us: i64,
        burst: u32,
    ) -> Result<Decision, LimitError> {
        let mut inv = SCRIPTS.gcra.key(key);
        inv.arg(interval_us).arg(burst);
        let reply: Vec<i64> = self.invoke("rate check", inv).await?;
        match reply.as_slice() {
            &[allowed, remaining, reset_us, retry_us] => Ok(Decision {
                allowed: allowed == 1,
                limit: burst,
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset_after: crate::clock::micros_to_duration(reset_us),
                retry_after: (allowed != 1).then(|| crate::clock::micros_to_duration(retry_us)),
            }),
            other => Err(unexpected("rate check", other)),
        }
    }

    /// Adds lease `id` if fewer than `max` leases are live.
    pub async fn acquire(
        &self,
        key: &str,
        max: u32,
        lease: Duration,
        id: &str,
    ) -> Result<bool, LimitError> {
        let mut inv = SCRIPTS.acquire.key(key);
        inv.arg(max).arg(duration_us(lease)).arg(id);
        let reply: Vec<i64> = self.invoke("acquire", inv).await?;
        match reply.as_slice() {
            &[acquired, _holders] => Ok(acquired == 1),
            other => Err(unexpected("acquire", other)),
        }
    }

    /// Extends lease `id`; `false` when it had already expired.
    pub async fn refresh(&self, key: &str, lease: Duration, id: &str) -> Result<bool, LimitError> {
        let mut inv = SCRIPTS.refresh.key(key);
        inv.arg(duration_us(lease)).arg(id);
        let reply: i64 = self.invoke("lease refresh", inv).await?;
        Ok(reply == 1)
    }

    pub async fn release(&self, key: &str, id: &str) -> Result<(), LimitError> {
        let mut conn = self.conn.clone();
        let _removed: i64 = self
            .run("release", async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(id)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    /// `(reserved, used, reserved)`; the counts are those before the call when refused.
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve(
        &self,
        keys: &(String, String),
        amount: i64,
        limit: i64,
        ttl: Duration,
        id: &str,
        key_ttl: Duration,
    ) -> Result<BudgetReply, LimitError> {
        let mut inv = SCRIPTS.reserve.key(&keys.0);
        inv.key(&keys.1)
            .arg(amount)
            .arg(limit)
            .arg(duration_us(ttl))
            .arg(id)
            .arg(duration_ms(key_ttl));
        let reply: Vec<i64> = self.invoke("reserve", inv).await?;
        budget_reply("reserve", &reply)
    }

    /// `(was_live, used, reserved)` after replacing reservation `id` (`""` for none) by
    /// `actual`.
    pub async fn settle(
        &self,
        keys: &(String, String),
        id: &str,
        actual: i64,
        key_ttl: Duration,
    ) -> Result<BudgetReply, LimitError> {
        let mut inv = SCRIPTS.settle.key(&keys.0);
        inv.key(&keys.1)
            .arg(id)
            .arg(actual)
            .arg(duration_ms(key_ttl));
        let reply: Vec<i64> = self.invoke("settle", inv).await?;
        budget_reply("settle", &reply)
    }

    pub async fn usage(&self, keys: &(String, String)) -> Result<(i64, i64), LimitError> {
        let mut inv = SCRIPTS.usage.key(&keys.0);
        inv.key(&keys.1);
        let reply: Vec<i64> = self.invoke("usage", inv).await?;
        match reply.as_slice() {
            &[used, reserved] => Ok((used, reserved)),
            other => Err(unexpected("usage", other)),
        }
    }
}

fn budget_reply(what: &str, reply: &[i64]) -> Result<BudgetReply, LimitError> {
    match *reply {
        [flag, used, reserved] => Ok((flag == 1, used, reserved)),
        _ => Err(unexpected(what, reply)),
    }
}

/// A reply of the wrong shape cannot decide anything: refuse.
fn unexpected(what: &str, reply: &(impl std::fmt::Debug + ?Sized)) -> LimitError {
    LimitError::Unavailable(format!("redis {what}: unexpected reply {reply:?}"))
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// At least one millisecond: `PEXPIRE key 0` would delete the key at once.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
