//! An in-memory AWS behind the same traits as the SDK adapters, for tests of the controllers'
//! decisions that need answers without a network or an emulator. It keeps the rules that the
//! decisions depend on (one StackSet operation at a time, OperationId idempotency, CreateAccount
//! is asynchronous and not idempotent, CloseAccount's quota, AccessDenied for a wrong
//! ExternalId) and nothing else. Faults are injected per operation with [`FakeAws::fail`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use futures::future::{BoxFuture, ready};

use super::accounts::{AccountInfo, AccountState, CreateAccountState, CreateRequest, NewAccount};
use super::stacksets::{
    CallAs, DetailedStatus, Instance, InstanceOperation, InstanceStatus, OperationState,
    OperationStatus, Preferences, StackSetDefinition, StackSetInfo, StackSetRef, StackSetStatus,
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
            complete(&mut s, &id);
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

    /// Accounts under `parent`, nested OUs included.
    fn under(&self, parent: &str) -> Vec<String> {
        let mut parents = vec![parent.to_string()];
        let mut i = 0;
        while i < parents.len() {
            let children = self.org_units.iter().filter(|(_, p)| **p == parents[i]);
            parents.extend(children.map(|(ou, _)| ou.clone()).collect::<Vec<_>>());
            i += 1;
        }
        let active = |a: &FakeAccount| a.info.state == Some(AccountState::Active);
        self.accounts
            .values()
            .filter(|a| parents.contains(&a.parent) && active(a))
            .filter(|a| a.info.id != self.management_account)
            .map(|a| a.info.id.clone())
            .collect()
    }
}

/// The work of an instance operation, applied when it starts.
enum Change {
    Deploy,
    Remove,
}

fn start(
    fake: &FakeAws,
    operation: &'static str,
    set: &StackSetRef,
    op: &InstanceOperation,
    change: Option<Change>,
) -> Result<String, AwsError> {
    let mut s = fake.state();
    s.enter(operation)?;
    let hold = s.hold_operations;
    let failing = s.failing_accounts.clone();
    let accounts: Vec<String> = if op.targets.organizational_units.is_empty() {
        op.targets.accounts.clone()
    } else {
        let mut under: Vec<(String, String)> = Vec::new();
        for ou in &op.targets.organizational_units {
            under.extend(s.under(ou).into_iter().map(|a| (a, ou.clone())));
        }
        under
            .into_iter()
            .filter(|(a, _)| match op.targets.intersect {
                Some(true) => op.targets.accounts.contains(a),
                Some(false) => !op.targets.accounts.contains(a),
                None => true,
            })
            .map(|(a, _)| a)
            .collect()
    };
    let target = s.set(operation, &set.name)?;
    if let Some((_, action)) = target.operations.get(&op.operation_id) {
        // A repeated OperationId starts nothing new.
        if action == operation {
            return Ok(op.operation_id.clone());
        }
        let message = format!("The operation ID {} already exists", op.operation_id);
        let class = ErrorClass::AlreadyExists;
        return Err(error(
            operation,
            class,
            "OperationIdAlreadyExistsException",
            message,
        ));
    }
    if target.operations.values().any(|(o, _)| !o.finished()) {
        let message = format!("Another Operation on StackSet {} is in progress", set.name);
        let class = ErrorClass::InProgress;
        return Err(error(
            operation,
            class,
            "OperationInProgressException",
            message,
        ));
    }
    let keys: Vec<(String, String)> = match change {
        // UpdateStackSet touches every instance.
        None => target.instances.keys().cloned().collect(),
        Some(_) => accounts
            .iter()
            .flat_map(|a| op.regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect(),
    };
    for (account, region) in keys {
        if matches!(change, Some(Change::Remove)) {
            target.instances.remove(&(account, region));
            continue;
        }
        let instance = target
            .instances
            .entry((account.clone(), region.clone()))
            .or_insert_with(|| Instance {
                account: account.clone(),
                region: region.clone(),
                ..Instance::default()
            });
        instance.last_operation_id = Some(op.operation_id.clone());
        (instance.status, instance.detailed_status, instance.reason) = match failing.get(&account) {
            _ if hold => (
                InstanceStatus::Outdated,
                Some(DetailedStatus::Running),
                None,
            ),
            Some(reason) => (
                InstanceStatus::Outdated,
                Some(DetailedStatus::Failed),
                Some(reason.clone()),
            ),
            None => (
                InstanceStatus::Current,
                Some(DetailedStatus::Succeeded),
                None,
            ),
        };
    }
    let status = if hold {
        OperationStatus::Running
    } else if accounts.iter().any(|a| failing.contains_key(a)) {
        OperationStatus::Failed
    } else {
        OperationStatus::Succeeded
    };
    let state = OperationState {
        status,
        reason: None,
    };
    target
        .operations
        .insert(op.operation_id.clone(), (state, operation.to_string()));
    Ok(op.operation_id.clone())
}

/// A ready future: the fake answers at once.
fn now<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(ready(value))
}

impl StackSets for FakeAws {
    fn trusted_access(&self, _call_as: CallAs) -> BoxFuture<'_, Result<bool, AwsError>> {
        let mut s = self.state();
        now(s
            .enter("cloudformation:DescribeOrganizationsAccess")
            .map(|()| s.trusted_access))
    }

    fn describe<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Option<StackSetInfo>, AwsError>> {
        let mut s = self.state();
        now(s.enter("cloudformation:DescribeStackSet").map(|()| {
            s.stack_sets.get(&set.name).map(|f| StackSetInfo {
                id: f.id.clone(),
                status: StackSetStatus::Active,
            })
        }))
    }

    fn create<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let mut s = self.state();
        now(s.enter("cloudformation:CreateStackSet").map(|()| {
            let id = format!("{}:{}", set.name, s.next_id);
            let entry = s.stack_sets.entry(set.name.clone());
            let created = entry.or_insert_with(|| FakeStackSet {
                id,
                definition: definition.clone(),
                instances: BTreeMap::new(),
                operations: BTreeMap::new(),
            });
            created.id.clone()
        }))
    }

    fn update<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
        operation_id: &'a str,
        preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let op = InstanceOperation {
            operation_id: operation_id.to_string(),
            targets: Default::default(),
            regions: Vec::new(),
            preferences: preferences.clone(),
        };
        let started = start(self, "cloudformation:UpdateStackSet", set, &op, None);
        if started.is_ok()
            && let Some(target) = self.state().stack_sets.get_mut(&set.name)
        {
            target.definition = definition.clone();
        }
        now(started)
    }

    fn delete<'a>(&'a self, set: &'a StackSetRef) -> BoxFuture<'a, Result<(), AwsError>> {
        let mut s = self.state();
        let result = s.enter("cloudformation:DeleteStackSet").and_then(|()| {
            match s.stack_sets.get(&set.name) {
                Some(f) if !f.instances.is_empty() => Err(error(
                    "cloudformation:DeleteStackSet",
                    ErrorClass::Rejected,
                    "StackSetNotEmptyException",
                    format!("StackSet {} still has instances", set.name),
                )),
                _ => {
                    s.stack_sets.remove(&set.name);
                    Ok(())
                }
            }
        });
        now(result)
    }

    fn instances<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Vec<Instance>, AwsError>> {
        let mut s = self.state();
        let op = "cloudformation:ListStackInstances";
        let result = s.enter(op).and_then(|()| s.set(op, &set.name));
        now(result.map(|f| f.instances.values().cloned().collect()))
    }

    fn create_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:CreateStackInstances";
        now(start(self, operation, set, op, Some(Change::Deploy)))
    }

    fn update_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:UpdateStackInstances";
        now(start(self, operation, set, op, Some(Change::Deploy)))
    }

    fn delete_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
        _retain_stacks: bool,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:DeleteStackInstances";
        now(start(self, operation, set, op, Some(Change::Remove)))
    }

    fn operation<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, AwsError>> {
        let mut s = self.state();
        let op = "cloudformation:DescribeStackSetOperation";
        let result = s.enter(op).and_then(|()| s.set(op, &set.name));
        now(result.map(|f| f.operations.get(operation_id).map(|(o, _)| o.clone())))
    }
}

/// Makes the account a request asked for (or fails the request when the e-mail is taken).
fn complete(s: &mut State, request: &str) {
    let Some((mut req, new)) = s.requests.get(request).cloned() else {
        return;
    };
    let taken = s
        .accounts
        .values()
        .any(|a| a.info.email.eq_ignore_ascii_case(&new.email));
    if taken {
        req.state = CreateAccountState::Failed;
        req.failure_reason = Some("EMAIL_ALREADY_EXISTS".into());
    } else {
        let id = s.new_id();
        s.accounts.insert(
            id.clone(),
            FakeAccount {
                info: AccountInfo {
                    id: id.clone(),
                    name: new.name.clone(),
                    email: new.email.clone(),
                    state: Some(AccountState::Active),
                },
                parent: ROOT.into(),
                tags: new.tags.clone(),
            },
        );
        req.state = CreateAccountState::Succeeded;
        req.account_id = Some(id);
    }
    s.requests.insert(request.to_string(), (req, new));
}

fn account_not_found(operation: &'static str, id: &str) -> AwsError {
    let message = format!("account {id} not found");
    error(
        operation,
        ErrorClass::NotFound,
        "AccountNotFoundException",
        message,
    )
}

/// Runs `f` on the account, or answers AccountNotFoundException.
fn with_account<'a, T: Send + 'a>(
    fake: &FakeAws,
    operation: &'static str,
    id: &str,
    f: impl FnOnce(&mut FakeAccount) -> Result<T, AwsError>,
) -> BoxFuture<'a, Result<T, AwsError>> {
    let mut s = fake.state();
    let result = s.enter(operation).and_then(|()| {
        s.accounts
            .get_mut(id)
            .ok_or_else(|| account_not_found(operation, id))
            .and_then(f)
    });
    now(result)
}

impl Accounts for FakeAws {
    fn create_account<'a>(
        &'a self,
        account: &'a NewAccount,
    ) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        let mut s = self.state();
        if let Err(e) = s.enter("organizations:CreateAccount") {
            return now(Err(e));
        }
        let id = format!("car-{}", s.new_id());
        let request = CreateRequest {
            id: id.clone(),
            state: CreateAccountState::InProgress,
            account_id: None,
            failure_reason: None,
            account_name: Some(account.name.clone()),
        };
        s.requests
            .insert(id.clone(), (request.clone(), account.clone()));
        if !s.hold_creations {
            complete(&mut s, &id);
        }
        // CreateAccount answers before the request completes.
        now(Ok(request))
    }

    fn create_request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        let mut s = self.state();
        let op = "organizations:DescribeCreateAccountStatus";
        now(s.enter(op).and_then(|()| {
            s.requests.get(id).map(|(r, _)| r.clone()).ok_or_else(|| {
                let class = ErrorClass::NotFound;
                let code = "CreateAccountStatusNotFoundException";
                error(op, class, code, format!("request {id} not found"))
            })
        }))
    }

    fn requests_in_progress(&self) -> BoxFuture<'_, Result<Vec<CreateRequest>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListCreateAccountStatus").map(|()| {
            s.requests
                .values()
                .map(|(r, _)| r)
                .filter(|r| r.state == CreateAccountState::InProgress)
                .cloned()
                .collect()
        }))
    }

    fn account_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<AccountInfo>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListAccounts").map(|()| {
            s.accounts
                .values()
                .find(|a| a.info.email.eq_ignore_ascii_case(email))
                .map(|a| a.info.clone())
        }))
    }

    fn account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AccountInfo, AwsError>> {
        with_account(self, "organizations:DescribeAccount", id, |a| {
            Ok(a.info.clone())
        })
    }

    fn parent_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, AwsError>> {
        with_account(self, "organizations:ListParents", id, |a| {
            Ok(a.parent.clone())
        })
    }

    fn move_account<'a>(
        &'a self,
        id: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        let op = "organizations:MoveAccount";
        with_account(self, op, id, |a| {
            if a.parent != from {
                let class = ErrorClass::NotFound;
                let code = "SourceParentNotFoundException";
                return Err(error(op, class, code, format!("{id} is not under {from}")));
            }
            a.parent = to.to_string();
            Ok(())
        })
    }

    fn tags<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>> {
        with_account(self, "organizations:ListTagsForResource", id, |a| {
            Ok(a.tags.clone())
        })
    }

    fn tag<'a>(
        &'a self,
        id: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        with_account(self, "organizations:TagResource", id, |a| {
            a.tags.extend(tags.clone());
            Ok(())
        })
    }

    fn untag<'a>(&'a self, id: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), AwsError>> {
        with_account(self, "organizations:UntagResource", id, |a| {
            a.tags.retain(|k, _| !keys.contains(k));
            Ok(())
        })
    }

    fn close_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        let op = "organizations:CloseAccount";
        let mut s = self.state();
        let result = s.enter(op).and_then(|()| {
            let quota = s.close_quota;
            let account = s
                .accounts
                .get_mut(id)
                .ok_or_else(|| account_not_found(op, id))?;
            if account.info.state != Some(AccountState::Active) {
                let (class, code) = (ErrorClass::AlreadyClosed, "AccountAlreadyClosedException");
                return Err(error(op, class, code, "already closed".into()));
            }
            if quota == Some(0) {
                let code = "ConstraintViolationException";
                let err = error(op, ErrorClass::Rejected, code, "quota used up".into());
                return Err(err.with_reason(Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED")));
            }
            account.info.state = Some(AccountState::PendingClosure);
            s.close_quota = quota.map(|q| q - 1);
            Ok(())
        });
        now(result)
    }
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
    fn hub_account(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        let mut s = self.state();
        now(s
            .enter("sts:GetCallerIdentity")
            .map(|()| s.hub_account.clone()))
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
