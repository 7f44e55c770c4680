//! The cross-tenant leak index: every tenant's protected identifiers, so one tenant's traffic
//! can be checked for another's names and ids.
//!
//! The index is the one place where tenants' identifiers meet. It answers only "this span
//! belongs to some other tenant": never which tenant, never the identifier, so a finding can
//! be counted, masked or blocked without telling the caller anything about the other tenant.

use tenantry_core::TenantId;

use crate::normalize::Folded;
use crate::words::PhraseSet;

#[derive(Debug, Clone, Default)]
pub struct LeakIndex {
    set: PhraseSet,
    owners: Vec<TenantId>,
}

impl LeakIndex {
    /// Builds the index from each tenant's identifiers.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a TenantId, &'a [String])>) -> Self {
        let mut set = PhraseSet::new();
        let mut owners = Vec::new();
        for (tenant, identifiers) in entries {
            for id in identifiers {
                set.add(id, owners.len());
                owners.push(tenant.clone());
            }
        }
        Self { set, owners }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn max_len(&self) -> usize {
        if self.set.is_empty() {
            0
        } else {
            self.set.max_len()
        }
    }

    /// Spans of `folded` that are identifiers of a tenant other than `tenant`. An identifier
    /// the tenant registered itself is never a leak in its own traffic, even if another tenant
    /// registered the same one.
    pub fn find(
        &self,
        tenant: &TenantId,
        folded: &Folded,
        words: &[(usize, usize)],
        out: &mut Vec<(usize, usize)>,
    ) {
        let mut hits = Vec::new();
        self.set.find(folded, words, &mut hits);
        let own: Vec<(usize, usize)> = hits
            .iter()
            .filter(|(_, _, i)| self.owners.get(*i) == Some(tenant))
            .map(|&(s, e, _)| (s, e))
            .collect();
        for (s, e, i) in hits {
            if self.owners.get(i).is_some_and(|o| o != tenant) && !own.contains(&(s, e)) {
                out.push((s, e));
            }
        }
    }
}
