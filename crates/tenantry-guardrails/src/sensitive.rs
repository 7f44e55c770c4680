//! Detectors of sensitive information: e-mail addresses, phone numbers, payment cards (issuer
//! prefix and Luhn), IBANs (country length and ISO 13616 mod-97), US social security numbers,
//! IP addresses, API keys and secrets, and the operator's custom patterns.
//!
//! Each detector finds candidates with a linear-time regular expression over the original text
//! and then validates them (check digits, boundaries, ranges), so a number that merely looks
//! like a card is not one. Detectors report byte spans; masking is the engine's job.

use std::sync::LazyLock;

use regex::Regex;

use crate::profile::Entity;

/// Compiles an operator's pattern with a bounded program size.
pub fn compile_custom(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        // The built-in patterns are constants covered by the tests.
        Err(e) => panic!("built-in pattern {pattern:?} does not compile: {e}"),
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+",
    )
});
static PHONE_INTL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\+|\b00)[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,6}"));
static PHONE_NANP: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9](?:[ \-]?[0-9]){12,18}"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,32}"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"));
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\.[0-9.]+)?"));
static SECRET_KNOWN: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
        r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{22,}",
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"|xox[abprs]-[A-Za-z0-9\-]{10,}",
        r"|AIza[0-9A-Za-z_\-]{35}",
        r"|glpat-[A-Za-z0-9_\-]{20,}",
        r"|-----BEGIN [A-Z ]{0,24}PRIVATE KEY-----",
        r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    ))
});
static SECRET_ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:api[_\-]?key|secret(?:[_\-]?key)?|client[_\-]?secret|password|passwd|access[_\-]?token|auth[_\-]?token)\s*[:=]\s*["']?([^\s"']{8,200})"#,
    )
});
static SECRET_TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9+/_\-=]{24,512}"));

/// The longest text a detector's match can span, in characters: what a stream holds back.
pub fn max_len(entity: Entity) -> usize {
    match entity {
        Entity::Email => 254,
        Entity::Phone => 24,
        Entity::Card => 40,
        Entity::Iban => 50,
        Entity::UsSsn => 11,
        Entity::IpAddress => 45,
        Entity::Secret => 512,
    }
}

fn before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

/// No letter or digit touches the span on either side.
fn word_bounded(text: &str, s: usize, e: usize) -> bool {
    !before(text, s).is_some_and(char::is_alphanumeric)
        && !after(text, e).is_some_and(char::is_alphanumeric)
}

/// Finds every match of `entity` in `text`, as byte spans, in order.
pub fn find(entity: Entity, text: &str, out: &mut Vec<(usize, usize)>) {
    match entity {
        Entity::Email => emails(text, out),
        Entity::Phone => phones(text, out),
        Entity::Card => cards(text, out),
        Entity::Iban => ibans(text, out),
        Entity::UsSsn => ssns(text, out),
        Entity::IpAddress => ips(text, out),
        Entity::Secret => secrets(text, out),
    }
}

fn emails(text: &str, out: &mut Vec<(usize, usize)>) {
    for m in EMAIL.find_iter(text) {
        let (mut s, e) = (m.start(), m.end());
        let at = match text[s..e].find('@') {
            Some(i) => s + i,
            None => continue,
        };
        while s < at && text.as_bytes()[s] == b'.' {
            s += 1;
        }
        let local = &text[s..at];
        let domain = &text[at + 1..e];
        let tld = domain.rsplit('.').next().unwrap_or("");
        if local.is_empty()
            || local.len() > 64
            || local.ends_with('.')
            || local.contains("..")
            || tld.len() < 2
            || !tld.bytes().all(|b| b.is_ascii_alphabetic())
            || after(text, e).is_some_and(|c| c.is_alphanumeric() || c == '@')
        {
            continue;
        }
        out.push((s, e));
    }
}

fn digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

fn phones(text: &str, out: &mut Vec<(usize, usize)>) {
    let start = out.len();
    for m in PHONE_INTL.find_iter(text) {
        let (s, mut e) = (m.start(), m.end());
        // A trailing `(` or separator is not part of the number.
        while e > s && !text.as_bytes()[e - 1].is_ascii_digit() && text.as_bytes()[e - 1] != b')' {
            e -= 1;
        }
        let n = digits(&text[s..e]);
        if (8..=15).contains(&n)
            && !before(text, s).is_some_and(|c| c.is_alphanumeric() || c == '+')
            && !after(text, e).is_some_and(|c| c.is_ascii_digit())
        {
            out.push((s, e));
        }
    }
    for m in PHONE_NANP.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let overlaps = out[start..].iter().any(|&(a, b)| s < b && a < e);
        if !overlaps
            && !before(text, s).is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '.')
            && !after(text, e).is_some_and(|c| c.is_alphanumeric() || c == '-')
        {
            out.push((s, e));
        }
    }
}

/// The Luhn check over a string of ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether a card number of this length starts like one a card network issues.
fn card_issuer(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    let len = d.len();
    let p2 = prefix(2);
    let p4 = prefix(4);
    let p6 = prefix(6);
    (d[0] == b'4' && matches!(len, 13 | 16 | 19))
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16
        || matches!(p2, 34 | 37) && len == 15
        || (p4 == 6011 || p2 == 65 || (644..=649).contains(&prefix(3))) && (16..=19).contains(&len)
        || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        || matches!(p2, 36 | 38 | 30) && (14..=19).contains(&len)
        || (622126..=622925).contains(&p6) && (16..=19).contains(&len)
        || p2 == 62 && (16..=19).contains(&len)
}

fn cards(text: &str, out: &mut Vec<(usize, usize)>) {
    for m in CARD.find_iter(text) {
        let s = m.start();
        if before(text, s).is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-') {
            continue;
        }
        // Digit positions within the match; try the longest valid prefix that ends at a digit
        // group boundary.
        let span = m.as_str().as_bytes();
        let pos: Vec<usize> = (0..span.len())
            .filter(|&i| span[i].is_ascii_digit())
            .collect();
        let all: Vec<u8> = pos.iter().map(|&i| span[i]).collect();
        for len in (13..=all.len().min(19)).rev() {
            let end = s + pos[len - 1] + 1;
            if after(text, end).is_some_and(|c| c.is_alphanumeric()) {
                continue;
            }
            let d = &all[..len];
            if card_issuer(d) && luhn(d) {
                out.push((s, end));
                break;
            }
        }
    }
}

/// The length of an IBAN of each country (ISO 13616 registry, the common ones).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        _ => return None,
    })
}

/// The ISO 7064 mod-97-10 check of a compact, upper-case IBAN.
pub fn iban_valid(iban: &[u8]) -> bool {
    if iban.len() < 15 || iban.len() > 34 || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A') + 10) % 97;
        }
    }
    rem == 1
}

fn ibans(text: &str, out: &mut Vec<(usize, usize)>) {
    for m in IBAN.find_iter(text) {
        let s = m.start();
        if before(text, s).is_some_and(char::is_alphanumeric) {
            continue;
        }
        let span = m.as_str().as_bytes();
        let country = m.as_str()[..2].to_ascii_uppercase();
        let pos: Vec<usize> = (0..span.len()).filter(|&i| span[i] != b' ').collect();
        let compact: Vec<u8> = pos.iter().map(|&i| span[i].to_ascii_uppercase()).collect();
        let lens: Vec<usize> = match iban_length(&country) {
            Some(n) => vec![n],
            None => (15..=compact.len().min(34)).rev().collect(),
        };
        for len in lens {
            if len > compact.len() {
                continue;
            }
            let end = s + pos[len - 1] + 1;
            if after(text, end).is_some_and(char::is_alphanumeric) {
                continue;
            }
            if iban_valid(&compact[..len]) {
                out.push((s, end));
                break;
            }
        }
    }
}

fn ssns(text: &str, out: &mut Vec<(usize, usize)>) {
    for m in SSN.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        if before(text, s).is_some_and(|c| c.is_alphanumeric() || c == '-')
            || after(text, e).is_some_and(|c| c.is_alphanumeric() || c == '-')
        {
            continue;
        }
        let t = m.as_str();
        let (area, group, serial) = (&t[..3], &t[4..6], &t[7..]);
        let area_ok = area != "000" && area != "666" && !area.starts_with('9');
        if area_ok && group != "00" && serial != "0000" {
            out.push((s, e));
        }
    }
}

fn ips(text: &str, out: &mut Vec<(usize, usize)>) {
    for m in IPV4.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        if before(text, s).is_some_and(|c| c.is_alphanumeric() || c == '.')
            || after(text, e).is_some_and(|c| c.is_alphanumeric())
            || text[e..].starts_with('.') && text[e + 1..].starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        if m.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
            out.push((s, e));
        }
    }
    for m in IPV6.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let t = m.as_str();
        if t.matches(':').count() < 2
            || !t.bytes().any(|b| b.is_ascii_hexdigit())
            || before(text, s).is_some_and(|c| c.is_alphanumeric() || c == ':')
            || after(text, e).is_some_and(|c| c.is_alphanumeric() || c == ':')
        {
            continue;
        }
        if t.parse::<std::net::Ipv6Addr>().is_ok() {
            out.push((s, e));
        }
    }
}

/// Shannon entropy of the characters of `s`, in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 128];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[usize::from(b & 0x7f)] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn secrets(text: &str, out: &mut Vec<(usize, usize)>) {
    let start = out.len();
    let overlaps = |out: &Vec<(usize, usize)>, s: usize, e: usize| {
        out[start..].iter().any(|&(a, b)| s < b && a < e)
    };
    for m in SECRET_KNOWN.find_iter(text) {
        if !before(text, m.start()).is_some_and(|c| c.is_ascii_alphanumeric()) {
            out.push((m.start(), m.end()));
        }
    }
    for c in SECRET_ASSIGNED.captures_iter(text) {
        if let Some(v) = c.get(1)
            && !overlaps(out, v.start(), v.end())
        {
            out.push((v.start(), v.end()));
        }
    }
    for m in SECRET_TOKEN.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let t = m.as_str();
        if !word_bounded(text, s, e) || overlaps(out, s, e) {
            continue;
        }
        let upper = t.bytes().any(|b| b.is_ascii_uppercase());
        let lower = t.bytes().any(|b| b.is_ascii_lowercase());
        let digit = t.bytes().filter(u8::is_ascii_digit).count();
        if upper && lower && digit >= 2 && entropy(t) >= 3.7 {
            out.push((s, e));
        }
    }
}

/// Matches of a custom pattern; empty matches are ignored.
pub fn find_custom(re: &Regex, text: &str, out: &mut Vec<(usize, usize)>) {
    for m in re.find_iter(text) {
        if m.start() < m.end() {
            out.push((m.start(), m.end()));
        }
    }
}
