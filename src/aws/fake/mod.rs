//! An in-memory AWS behind the same traits as the SDK adapters, for tests of the controllers'
//! decisions that need answers without a network or an emulator. It keeps the rules that the
//! decisions depend on (one StackSet operation at a time, OperationId idempotency, CreateAccount
//! is asynchronous and not idempotent, CloseAccount's quota, AccessDenied for a wrong
//! ExternalId) and nothing else. Faults are injected per operation with [`FakeAws::fail`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use futures::future::{BoxFuture, ready};

use super::accounts::{AccountInfo, AccountState, CreateAccountState, CreateRequest, NewAccount};
use super::stacksets::{
    CallAs, DetailedStatus, Instance, InstanceOperation, InstanceStatus, OperationState,
    OperationStatus, Preferences, StackSetDefinition, StackSetRef,
};
use super::sts::{CallerIdentity, VerifyRequest};
use super::{
    AccountDirectory, Accounts, AwsError, ErrorClass, HubIdentity, OrgUnits, RoleVerifier,
    StackSets,
};

/// The organization's root in the fake.
pub const ROOT: &str = "r-root";

/// A StackSet as the fake keeps it.
#[derive(Clone, Debug)]
pub struct FakeStackSet {
    pub id: String,
    pub definition: StackSetDefinition,
    pub instances: BTreeMap<(String, String), Instance>,
    /// Every operation ever started, with the call that started it. Instances change when an
    /// operation starts; while operations are held they read OUTDATED/RUNNING until finished.
    pub operations: BTreeMap<String, (OperationState, String)>,
}

/// An account as the fake keeps it.
#[derive(Clone, Debug, Default)]
pub struct FakeAccount {
    pub info: AccountInfo,
    pub parent: String,
    pub tags: BTreeMap<String, String>,
}

/// Everything the fake knows; tests may read and arrange it through [`FakeAws::state`].
#[derive(Debug, Default)]
pub struct State {
    pub calls: Vec<&'static str>,
    pub failures: HashMap<&'static str, VecDeque<AwsError>>,
    pub trusted_access: bool,
    pub stack_sets: BTreeMap<String, FakeStackSet>,
    /// Operations stay RUNNING until [`FakeAws::finish_operations`] while this is set.
    pub hold_operations: bool,
    /// Accounts whose instances end FAILED, with the reason.
    pub failing_accounts: BTreeMap<String, String>,
    pub accounts: BTreeMap<String, FakeAccount>,
    /// OU → its parent (an OU or [`ROOT`]).
    pub org_units: BTreeMap<String, String>,
    pub management_account: String,
    pub requests: BTreeMap<String, (CreateRequest, NewAccount)>,
    /// CreateAccount requests stay IN_PROGRESS until [`FakeAws::finish_creations`] while set.
    pub hold_creations: bool,
    /// CloseAccount calls left before the 30-day quota is used up; `None` is unlimited.
    pub close_quota: Option<u32>,
    /// Role ARN → the ExternalId its trust policy requires.
    pub roles: BTreeMap<String, String>,
    pub hub_account: String,
    /// The ARN GetCallerIdentity reports for the operator.
    pub hub_arn: String,
    /// Template bodies by S3 URL, for GetTemplateSummary.
    pub template_objects: BTreeMap<String, String>,
    next_id: u64,
}

/// The in-memory AWS. Share it as `Arc<FakeAws>`; it coerces to every trait object.
#[derive(Debug, Default)]
pub struct FakeAws {
    state: Mutex<State>,
}

fn error(operation: &'static str, class: ErrorClass, code: &str, message: String) -> AwsError {
    AwsError {
        code: Some(code.to_string()),
        ..AwsError::new(operation, class, message)
    }
}

impl FakeAws {
    /// An organization with only its management account, which is also the hub.
    pub fn new() -> Self {
        let fake = Self::default();
        {
            let mut s = fake.state();
            s.trusted_access = true;
            s.management_account = "000000000000".into();
            s.hub_account = "000000000000".into();
            s.hub_arn = "arn:aws:sts::000000000000:assumed-role/hub/operator".into();
            s.next_id = 100_000_000_000;
        }
        fake
    }

    /// The fake's state, to arrange a test or to assert on it.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake AWS state poisoned")
    }

    /// The next call of `operation` (`service:Operation`, as in [`AwsError::operation`]) fails.
    pub fn fail(&self, operation: &'static str, class: ErrorClass, code: &str) {
        let err = error(operation, class, code, format!("injected {code}"));
        let mut s = self.state();
        s.failures.entry(operation).or_default().push_back(err);
    }

    /// The operations called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.state().calls.clone()
    }

    /// Adds an active account under `parent`.
    pub fn add_account(&self, id: &str, email: &str, parent: &str) {
        self.state().accounts.insert(
            id.to_string(),
            FakeAccount {
                info: AccountInfo {
                    id: id.to_string(),
                    name: id.to_string(),
                    email: email.to_string(),
                    state: Some(AccountState::Active),
                },
                parent: parent.to_string(),
                tags: BTreeMap::new(),
            },
        );
    }

    /// Makes `role_arn` assumable with `external_id`.
    pub fn add_role(&self, role_arn: &str, external_id: &str) {
        let mut s = self.state();
        s.roles
            .insert(role_arn.to_string(), external_id.to_string());
    }

    /// Ends every running operation: its instances take the state it leaves behind.
    pub fn finish_operations(&self) {
        let mut s = self.state();
        for set in s.stack_sets.values_mut() {
            for (op, _) in set.operations.values_mut() {
                if op.status == OperationStatus::Running {
                    op.status = OperationStatus::Succeeded;
                }
            }
            for instance in set.instances.values_mut() {
                if instance.detailed_status == Some(DetailedStatus::Running) {
                    instance.detailed_status = Some(DetailedStatus::Succeeded);
                    instance.status = InstanceStatus::Current;
                }
            }
        }
    }

    /// Completes every CreateAccount request in progress.
    pub fn finish_creations(&self) {
        let mut s = self.state();
        let pending: Vec<String> = s
            .requests
            .iter()
            .filter(|(_, (r, _))| r.state == CreateAccountState::InProgress)
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            accounts::complete(&mut s, &id);
        }
    }
}

impl State {
    /// Records the call and pops an injected failure.
    fn enter(&mut self, operation: &'static str) -> Result<(), AwsError> {
        self.calls.push(operation);
        match self
            .failures
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn set(&mut self, operation: &'static str, name: &str) -> Result<&mut FakeStackSet, AwsError> {
        self.stack_sets.get_mut(name).ok_or_else(|| {
            let message = format!("StackSet {name} not found");
            error(
                operation,
                ErrorClass::NotFound,
                "StackSetNotFoundException",
                message,
            )
        })
    }

    /// `parent` and the OUs nested under it.
    fn units_under(&self, parent: &str) -> Vec<String> {
        let mut parents = vec![parent.to_string()];
        let mut i = 0;
        while i < parents.len() {
            let children = self.org_units.iter().filter(|(_, p)| **p == parents[i]);
            parents.extend(children.map(|(ou, _)| ou.clone()).collect::<Vec<_>>());
            i += 1;
        }
        parents
    }

    /// Accounts under `parent`, nested OUs included.
    fn under(&self, parent: &str) -> Vec<String> {
        let parents = self.units_under(parent);
        let active = |a: &FakeAccount| a.info.state == Some(AccountState::Active);
        self.accounts
            .values()
            .filter(|a| parents.contains(&a.parent) && active(a))
            .filter(|a| a.info.id != self.management_account)
            .map(|a| a.info.id.clone())
            .collect()
    }
}

/// A ready future: the fake answers at once.
fn now<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(ready(value))
}

impl OrgUnits for FakeAws {
    fn accounts_under<'a>(
        &'a self,
        parents: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListAccountsForParent").map(|()| {
            let mut found = BTreeMap::new();
            for parent in parents {
                for account in s.under(parent) {
                    found.entry(account).or_insert_with(|| parent.clone());
                }
            }
            found
        }))
    }

    fn root(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        let mut s = self.state();
        now(s
            .enter("organizations:ListRoots")
            .map(|()| ROOT.to_string()))
    }

    fn subtree<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<BTreeSet<String>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListChildren").map(|()| {
            let mut units = s.units_under(unit);
            let accounts = s.accounts.values().filter(|a| units.contains(&a.parent));
            let accounts: Vec<String> = accounts.map(|a| a.info.id.clone()).collect();
            units.retain(|u| u != unit);
            units.into_iter().chain(accounts).collect()
        }))
    }
}

impl AccountDirectory for FakeAws {
    fn account_name<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        let mut s = self.state();
        now(s
            .enter("organizations:DescribeAccount")
            .map(|()| s.accounts.get(account_id).map(|a| a.info.name.clone())))
    }
}

impl RoleVerifier for FakeAws {
    fn verify<'a>(
        &'a self,
        req: VerifyRequest<'a>,
    ) -> BoxFuture<'a, Result<CallerIdentity, AwsError>> {
        let mut s = self.state();
        let op = "sts:AssumeRole";
        let result = s.enter(op).and_then(|()| {
            let trusted = s.roles.get(req.role_arn);
            if trusted.map(String::as_str) != Some(req.external_id.expose()) {
                let message = format!(
                    "not authorized to perform sts:AssumeRole on {}",
                    req.role_arn
                );
                return Err(error(op, ErrorClass::AccessDenied, "AccessDenied", message));
            }
            s.enter("sts:GetCallerIdentity")?;
            // arn:aws:iam::<account>:role/<name>
            let mut parts = req.role_arn.split(':');
            let account = parts.nth(4).unwrap_or_default().to_string();
            let role = req.role_arn.rsplit('/').next().unwrap_or_default();
            Ok(CallerIdentity {
                arn: format!(
                    "arn:aws:sts::{account}:assumed-role/{role}/{}",
                    req.session_name
                ),
                account,
            })
        });
        now(result)
    }
}

impl HubIdentity for FakeAws {
    fn caller(&self) -> BoxFuture<'_, Result<CallerIdentity, AwsError>> {
        let mut s = self.state();
        now(s.enter("sts:GetCallerIdentity").map(|()| CallerIdentity {
            account: s.hub_account.clone(),
            arn: s.hub_arn.clone(),
        }))
    }
}

mod accounts;
mod stacksets;

#[cfg(test)]
mod tests;
