//! Tenancy decisions: whether the LinkPolicies selecting an object's namespace permit what the
//! object asks of AWS.
//!
//! The rule: an object is permitted when at least one policy that selects its namespace
//! permits everything it asks (each policy all or nothing; policies are never combined field
//! by field, so two narrow policies cannot add up to a wide one). Nothing selects the
//! namespace: nothing is permitted.
//!
//! [`evaluate`] is pure. What it cannot know from the spec — whether an account or OU lies
//! under a permitted OU, how many accounts a registration resolves to, a MemberAccount's rank
//! — it asks for with [`Verdict::Needs`]; the caller reads it into [`Facts`] and asks again.
//! Everything that needs no read is decided first: a policy that refuses on the spec alone
//! never asks, so an object every policy refuses that way costs no AWS call at all.

mod ask;
pub mod glob;
mod message;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

pub use self::ask::{Ask, BuiltinAsk, BulkAsk, LinkAsk, MemberAsk};
pub use self::message::MAX_MESSAGE;
use self::message::{Refusal, list, render};
use crate::api::LinkPolicy;
use crate::api::link_policy::{AccountScope, LinkPolicySpec, TemplateSourceKind};

/// The namespace of an object, as policies select it.
#[derive(Clone, Copy, Debug)]
pub struct Namespace<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// What reads found, each asked for by [`Verdict::Needs`].
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// A BulkRegistration's targets, resolved.
    pub targets: Option<Targets>,
    /// Whether an account or OU (first) is the OU (second) or nested under it.
    pub within: BTreeMap<(String, String), bool>,
    /// A MemberAccount's place among the MemberAccounts of its namespace, oldest first (0-based).
    pub rank: Option<usize>,
}

/// A BulkRegistration's targets after OUs, ConfigMaps and exclusions are resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub count: usize,
    /// Accounts targeted by ID (in the spec or a ConfigMap) rather than through an OU target.
    pub listed: BTreeSet<String>,
}

/// Reads evaluation needs before it can decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Resolve the BulkRegistration's targets ([`Facts::targets`]).
    pub targets: bool,
    /// Rank the MemberAccount in its namespace ([`Facts::rank`]).
    pub rank: bool,
    /// Whether each account or OU lies under each OU ([`Facts::within`]).
    pub within: BTreeSet<(String, String)>,
}

impl Needs {
    fn is_empty(&self) -> bool {
        !self.targets && !self.rank && self.within.is_empty()
    }

    fn add(&mut self, other: Needs) {
        self.targets |= other.targets;
        self.rank |= other.rank;
        self.within.extend(other.within);
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `policy` permits everything the object asks.
    Permitted { policy: String },
    /// No policy does; the message names the fields, values and policies considered.
    NotPermitted { message: String },
    /// A policy may permit the object once these reads are made.
    Needs(Needs),
}

/// Whether `policy` selects `ns`: by name, or by its labels (`{}` selects every namespace; a
/// selector the API would reject selects none).
pub fn selects(policy: &LinkPolicy, ns: Namespace<'_>) -> bool {
    let spec = &policy.spec;
    spec.namespaces.iter().any(|n| n == ns.name)
        || spec.namespace_selector.as_ref().is_some_and(|s| {
            Selector::try_from(s.clone()).is_ok_and(|selector| selector.matches(ns.labels))
        })
}

/// Decides `ask` of an object in `ns` under `policies` with what `facts` holds so far.
pub fn evaluate(ask: &Ask, ns: Namespace<'_>, policies: &[&LinkPolicy], facts: &Facts) -> Verdict {
    let mut selecting: Vec<&LinkPolicy> = policies
        .iter()
        .copied()
        .filter(|p| selects(p, ns))
        .collect();
    if selecting.is_empty() {
        return Verdict::NotPermitted {
            message: message::cap(format!("no LinkPolicy selects namespace {}", ns.name)),
        };
    }
    selecting.sort_by_key(|p| p.name_any());
    let mut refusals = Vec::new();
    let mut needs = Needs::default();
    for policy in selecting {
        let mut tally = Tally::default();
        match ask {
            Ask::Link(a) => link(&policy.spec, a, facts, &mut tally),
            Ask::Bulk(a) => bulk(&policy.spec, a, facts, &mut tally),
            Ask::Member(a) => member(&policy.spec, a, facts, &mut tally),
        }
        match tally.refusal {
            Some(refusal) => refusals.push((policy.name_any(), refusal)),
            None if tally.needs.is_empty() => {
                return Verdict::Permitted {
                    policy: policy.name_any(),
                };
            }
            None => needs.add(tally.needs),
        }
    }
    if needs.is_empty() {
        Verdict::NotPermitted {
            message: render(&refusals),
        }
    } else {
        Verdict::Needs(needs)
    }
}

/// One policy's checks of one object: its first refusal, and the reads the others need.
#[derive(Default)]
struct Tally {
    refusal: Option<Refusal>,
    needs: Needs,
}

impl Tally {
    fn refuse(&mut self, subject: impl Into<String>, allows: impl Into<String>) {
        if self.refusal.is_none() {
            self.refusal = Some(Refusal::new(subject, allows));
        }
    }

    fn refused(&self) -> bool {
        self.refusal.is_some()
    }

    /// Records where `subject` stands in a scope.
    fn scoped(
        &mut self,
        scoped: Scoped,
        subject: impl FnOnce() -> String,
        allows: impl FnOnce() -> String,
    ) {
        match scoped {
            Scoped::Yes => {}
            Scoped::No => self.refuse(subject(), allows()),
            Scoped::Ask(pairs) => self.needs.within.extend(pairs),
        }
    }
}

/// Whether an account or OU lies in a scope.
enum Scoped {
    Yes,
    No,
    /// Not known until these (id, OU) pairs are read.
    Ask(Vec<(String, String)>),
}

fn is_root(unit: &str) -> bool {
    unit.starts_with("r-")
}

/// Whether `id` is one of `units` or under one of them, as far as `facts` know. A listed root
/// holds everything.
fn within(id: &str, units: &[String], facts: &Facts) -> Scoped {
    if is_root(id) {
        // Nothing holds the root but the root.
        return if units.iter().any(|u| u == id || is_root(u)) {
            Scoped::Yes
        } else {
            Scoped::No
        };
    }
    let mut ask = Vec::new();
    for unit in units {
        if is_root(unit) || unit == id {
            return Scoped::Yes;
        }
        let pair = (id.to_string(), unit.clone());
        match facts.within.get(&pair) {
            Some(true) => return Scoped::Yes,
            Some(false) => {}
            None => ask.push(pair),
        }
    }
    if ask.is_empty() {
        Scoped::No
    } else {
        Scoped::Ask(ask)
    }
}

/// Whether `accounts.ids` has `*`: every account, OU and the root.
fn any_account(scope: &AccountScope) -> bool {
    scope.ids.iter().any(|i| i == "*")
}

/// Whether the account `id` is in `scope`.
fn account_in(scope: &AccountScope, id: &str, facts: &Facts) -> Scoped {
    if any_account(scope) || scope.ids.iter().any(|i| i == id) {
        return Scoped::Yes;
    }
    within(id, &scope.organizational_unit_ids, facts)
}

/// Whether the OU or root `unit` may be targeted under `scope`: the root only when listed.
fn unit_in(scope: &AccountScope, unit: &str, facts: &Facts) -> Scoped {
    if any_account(scope) {
        return Scoped::Yes;
    }
    within(unit, &scope.organizational_unit_ids, facts)
}

fn scope_text(scope: &AccountScope) -> String {
    if scope.ids.is_empty() && scope.organizational_unit_ids.is_empty() {
        return "allows no accounts".into();
    }
    format!(
        "allows accounts ids {} and organizationalUnitIds {}",
        list(&scope.ids),
        list(&scope.organizational_unit_ids)
    )
}

fn role(spec: &LinkPolicySpec, subject: &str, name: &str, tally: &mut Tally) {
    if !spec.role_names.iter().any(|p| glob::matches(p, name)) {
        tally.refuse(
            subject,
            format!("allows roleNames {}", list(&spec.role_names)),
        );
    }
}

fn link(spec: &LinkPolicySpec, ask: &LinkAsk, facts: &Facts, tally: &mut Tally) {
    role(spec, &ask.role_field, &ask.role_name, tally);
    if tally.refused() {
        return;
    }
    let scoped = account_in(&spec.accounts, &ask.account_id, facts);
    tally.scoped(
        scoped,
        || format!("spec.accountId={}", ask.account_id),
        || scope_text(&spec.accounts),
    );
}

fn template_field(kind: TemplateSourceKind) -> &'static str {
    match kind {
        TemplateSourceKind::Builtin => "spec.template.builtin",
        TemplateSourceKind::ConfigMap => "spec.template.configMapRef",
        TemplateSourceKind::Url => "spec.template.url",
    }
}

fn bulk(spec: &LinkPolicySpec, ask: &BulkAsk, facts: &Facts, tally: &mut Tally) {
    let Some(rights) = &spec.bulk_registrations else {
        tally.refuse("a BulkRegistration", "has no bulkRegistrations rights");
        return;
    };
    if !rights.template_sources.contains(&ask.template) {
        let sources: Vec<String> = rights
            .template_sources
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        tally.refuse(
            template_field(ask.template),
            format!("allows templateSources {}", list(&sources)),
        );
    }
    if let Some(builtin) = &ask.builtin {
        let subject = format!("spec.template.builtin.roleName={}", builtin.role_name);
        role(spec, &subject, &builtin.role_name, tally);
        if let Some(trusted) = &builtin.trusted_account_id
            && !rights
                .trusted_principals
                .iter()
                .any(|p| p == "*" || p == trusted)
        {
            tally.refuse(
                format!("spec.template.builtin.trustedAccountId={trusted}"),
                format!(
                    "allows trustedPrincipals {}",
                    list(&rights.trusted_principals)
                ),
            );
        }
        for arn in &builtin.managed_policy_arns {
            if !rights
                .managed_policy_arns
                .iter()
                .any(|p| glob::matches(p, arn))
            {
                tally.refuse(
                    format!("spec.template.builtin.managedPolicyArns={arn}"),
                    format!(
                        "allows managedPolicyArns {}",
                        list(&rights.managed_policy_arns)
                    ),
                );
            }
        }
        if let Some(required) = &rights.permissions_boundary_arn
            && builtin.permissions_boundary_arn.as_ref() != Some(required)
        {
            let asked = builtin
                .permissions_boundary_arn
                .as_deref()
                .unwrap_or("(none)");
            tally.refuse(
                format!("spec.template.builtin.permissionsBoundaryArn={asked}"),
                format!("requires permissionsBoundaryArn {required}"),
            );
        }
    }
    if let Some(name) = &ask.stack_set_name
        && !rights
            .stack_set_name_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    {
        let allows = if rights.stack_set_name_prefixes.is_empty() {
            "allows only derived StackSet names (no stackSetNamePrefixes)".to_string()
        } else {
            format!(
                "allows stackSetNamePrefixes {}",
                list(&rights.stack_set_name_prefixes)
            )
        };
        tally.refuse(format!("spec.stackSet.name={name}"), allows);
    }
    if ask.adopt && !rights.stack_set_adoption {
        tally.refuse(
            "spec.stackSet.adopt=true",
            "does not allow stackSetAdoption",
        );
    }
    if let Some(name) = &ask.import_stack_name
        && !rights
            .import_stack_names
            .iter()
            .any(|p| glob::matches(p, name))
    {
        let allows = if rights.import_stack_names.is_empty() {
            "allows no import (no importStackNames)".to_string()
        } else {
            format!(
                "allows importStackNames {}",
                list(&rights.import_stack_names)
            )
        };
        tally.refuse(format!("spec.import.stackName={name}"), allows);
    }
    if ask.management_account && !rights.management_account {
        tally.refuse(
            "spec.targets.includeManagementAccount=true",
            "does not allow managementAccount",
        );
    }
    let max = rights.max_targets.map(|m| usize::try_from(m).unwrap_or(0));
    if let Some(max) = max
        && ask.accounts.len() > max
    {
        tally.refuse(
            format!("spec.targets.accounts ({} accounts)", ask.accounts.len()),
            format!("allows maxTargets {max}"),
        );
    }
    if tally.refused() {
        return;
    }
    let scope = &spec.accounts;
    for account in &ask.accounts {
        let scoped = account_in(scope, account, facts);
        tally.scoped(
            scoped,
            || format!("spec.targets.accounts={account}"),
            || scope_text(scope),
        );
    }
    for unit in &ask.units {
        let scoped = unit_in(scope, unit, facts);
        tally.scoped(
            scoped,
            || format!("spec.targets.organizationalUnitIds={unit}"),
            || scope_text(scope),
        );
    }
    let listed_need_checks = ask.lists && !any_account(scope);
    // Resolving the targets reads ConfigMaps and Organizations: only once nothing cheaper can
    // refuse.
    let undecided = !tally.needs.within.is_empty();
    if tally.refused() || undecided || (max.is_none() && !listed_need_checks) {
        return;
    }
    let Some(resolved) = &facts.targets else {
        tally.needs.targets = true;
        return;
    };
    if let Some(max) = max
        && resolved.count > max
    {
        tally.refuse(
            format!("spec.targets ({} accounts once resolved)", resolved.count),
            format!("allows maxTargets {max}"),
        );
    }
    if !listed_need_checks {
        return;
    }
    for account in resolved
        .listed
        .iter()
        .filter(|a| !ask.accounts.contains(*a))
    {
        let scoped = account_in(scope, account, facts);
        tally.scoped(
            scoped,
            || format!("spec.targets.accountsFrom account {account}"),
            || scope_text(scope),
        );
        if tally.refused() {
            return;
        }
    }
}

fn member(spec: &LinkPolicySpec, ask: &MemberAsk, facts: &Facts, tally: &mut Tally) {
    let Some(rights) = &spec.member_accounts else {
        tally.refuse("a MemberAccount", "has no memberAccounts rights");
        return;
    };
    if let Some(email) = &ask.email {
        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        if !rights
            .email_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            tally.refuse(
                format!("spec.email domain {domain}"),
                format!("allows emailDomains {}", list(&rights.email_domains)),
            );
        }
    }
    if let Some(account) = &ask.adopt
        && !rights.adoption
    {
        tally.refuse(
            format!("spec.accountId={account} (adoption)"),
            "does not allow adoption (memberAccounts.adoption is false)",
        );
    }
    role(
        spec,
        &format!("spec.roleName={}", ask.role_name),
        &ask.role_name,
        tally,
    );
    if ask.close && !rights.allow_close {
        tally.refuse(
            "spec.deletionPolicy=Close",
            "does not allow Close (allowClose is false)",
        );
    }
    let max = rights.max_accounts.map(|m| usize::try_from(m).unwrap_or(0));
    if max == Some(0) {
        tally.refuse("a MemberAccount", "allows maxAccounts 0");
    }
    if tally.refused() {
        return;
    }
    let scoped = within(&ask.parent_id, &rights.parent_ids, facts);
    tally.scoped(
        scoped,
        || format!("spec.parentId={}", ask.parent_id),
        || format!("allows parentIds {}", list(&rights.parent_ids)),
    );
    if let Some(park) = &ask.park_parent_id {
        let scoped = within(park, &rights.parent_ids, facts);
        tally.scoped(
            scoped,
            || format!("spec.parkParentId={park}"),
            || format!("allows parentIds {}", list(&rights.parent_ids)),
        );
    }
    if let Some(account) = &ask.adopt {
        let scoped = account_in(&spec.accounts, account, facts);
        tally.scoped(
            scoped,
            || format!("spec.accountId={account}"),
            || scope_text(&spec.accounts),
        );
    }
    let Some(max) = max else { return };
    match facts.rank {
        None => tally.needs.rank = true,
        Some(rank) if rank >= max => tally.refuse(
            format!(
                "MemberAccount number {} of the namespace (oldest first)",
                rank + 1
            ),
            format!("allows maxAccounts {max}"),
        ),
        Some(_) => {}
    }
}
