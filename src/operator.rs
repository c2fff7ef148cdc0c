//! `account-linker run`: wires the pieces together — telemetry, the HTTP endpoints, leader
//! election, the AWS clients, one set of controllers per watched namespace — and decides when
//! the process stops: on SIGTERM/SIGINT (gracefully), when the lease is lost, or when a
//! controller stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use tokio::task::{self, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};
use crate::aws::{AwsClients, AwsSettings};
use crate::config::{RunArgs, Tenancy};
use crate::controller::hash_key::{self, HashKey, HashKeyError};
use crate::controller::link_cache::LinkCache;
use crate::controller::recorder::Recorder;
use crate::controller::tenancy::{self, Gate};
use crate::controller::{bulk_registration, linked_account, member_account};
use crate::runtime::{Readiness, http, leader, shutdown};
use crate::telemetry::{self, Metrics};

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    LogFilter(#[from] telemetry::tracing::InvalidLogFilter),
    #[error("cannot reach Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serve {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Leader(#[from] leader::LeaderError),
    #[error("lost the leader lease; exiting so that only one replica writes")]
    LostLeadership,
    #[error("{0}; exiting so that the replica is restarted")]
    ControllerStopped(ControllerStopped),
    #[error("the key of template fingerprints: {0}")]
    HashKey(#[from] HashKeyError),
    #[error("cluster identity: {0}")]
    ClusterId(String),
}

/// How long in-flight reconciles (and their status writes) get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the operator until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(args: RunArgs) -> Result<(), OperatorError> {
    telemetry::tracing::init(args.log_format, &args.log_level)?;
    if args.tenancy == Tenancy::Disabled {
        warn!(
            "tenancy is disabled: objects in every watched namespace may use all of the operator's AWS rights; run this way for a single tenant only"
        );
    }
    let client = Client::try_default().await?;
    let cluster_id = cluster_id(&args, &client).await?;
    info!(%cluster_id, "cluster identity of every owner tag");
    let args = RunArgs {
        cluster_id: Some(cluster_id),
        ..args
    };
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();
    let stop = CancellationToken::new();
    let http_task = serve(&args, metrics.clone(), readiness.clone(), stop.clone()).await?;

    let signal = shutdown::signal();
    tokio::pin!(signal);

    let mut lease = None;
    if args.leader_elect {
        // Standby replicas are ready: they serve metrics and wait for the lease.
        readiness.set_standby(true);
        let mut elected = join_election(&args, client.clone()).await?;
        tokio::select! {
            res = elected.wait_until_leader() => res?,
            _ = &mut signal => {
                info!("shutting down before becoming leader");
                readiness.shutting_down();
                elected.release().await;
                stop.cancel();
                let _ = http_task.await;
                return Ok(());
            }
        }
        info!("became leader");
        metrics.set_leader(true);
        readiness.set_standby(false);
        lease = Some(elected);
    }

    let aws = Arc::new(
        AwsClients::load(&AwsSettings {
            region: args.aws_region.clone(),
            endpoint_url: args.aws_endpoint_url.clone(),
            attempt_timeout: args.aws_attempt_timeout,
            operation_timeout: args.aws_operation_timeout,
        })
        .await
        .with_observer(metrics.clone()),
    );
    let hash_key = load_hash_key(&args, &client).await?;
    let mut controllers =
        start_controllers(&args, &client, aws, hash_key, &metrics, &readiness, &stop);
    info!("controllers started");

    let outcome = supervise(&mut controllers, &mut signal, lease_lost(lease.as_mut())).await;

    // Stop taking work, let in-flight reconciles (and their status writes) finish, then hand
    // the lease over. Without the lease nothing may finish: another replica may take it over
    // soon, so every controller is aborted at once, mid-reconcile.
    readiness.shutting_down();
    stop.cancel();
    if matches!(outcome, Err(OperatorError::LostLeadership)) {
        controllers.abort().await;
    } else {
        tokio::select! {
            drained = controllers.drain(DRAIN) => if !drained {
                warn!("controllers did not stop within 30s");
            },
            () = lease_lost(lease.as_mut()) => {
                error!("lost the leader lease while stopping; aborting the controllers");
                controllers.abort().await;
            }
        }
    }
    if let Some(lease) = lease {
        lease.release().await;
    }
    metrics.set_leader(false);
    let _ = http_task.await;
    info!("stopped");
    outcome
}

/// The cluster identity: `--cluster-id`, else the UID of the `kube-system` namespace (it lives
/// as long as the cluster), read once. A value that cannot be an AWS tag stops the operator here,
/// before it touches anything.
async fn cluster_id(args: &RunArgs, client: &Client) -> Result<String, OperatorError> {
    let id = match &args.cluster_id {
        Some(id) => id.clone(),
        None => {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let kube_system = namespaces.get("kube-system").await.map_err(|e| {
                OperatorError::ClusterId(format!(
                    "cannot read the UID of namespace kube-system (allow get on it, or set --cluster-id): {e}"
                ))
            })?;
            kube_system.metadata.uid.unwrap_or_default()
        }
    };
    crate::api::labels::check_cluster_id(&id)
        .map_err(|e| OperatorError::ClusterId(format!("{id:?}: {e}")))?;
    Ok(id)
}

/// Resolves when this replica loses the lease; never when it runs without leader election.
async fn lease_lost(lease: Option<&mut leader::Election>) {
    match lease {
        Some(l) => l.wait_until_lost().await,
        None => std::future::pending().await,
    }
}

/// What ends the operator's run: a shutdown signal (Ok), the lease lost, or any controller
/// stopping — a replica missing one controller would otherwise look healthy (`/livez` and
/// `/readyz` green) while one kind goes unreconciled.
async fn supervise(
    controllers: &mut Controllers,
    signal: impl Future<Output = ()>,
    lease_lost: impl Future<Output = ()>,
) -> Result<(), OperatorError> {
    tokio::select! {
        () = signal => { info!("shutdown signal received"); Ok(()) }
        () = lease_lost => {
            error!("lost the leader lease");
            Err(OperatorError::LostLeadership)
        }
        stopped = controllers.first_stopped() => {
            error!(controller = stopped.controller, cause = stopped.cause, "a controller stopped");
            Err(OperatorError::ControllerStopped(stopped))
        }
    }
}

/// The controller tasks, each under its name so that a stop can say which one.
#[derive(Default)]
pub struct Controllers {
    tasks: JoinSet<()>,
    names: HashMap<task::Id, String>,
}

impl Controllers {
    /// Runs `task` as the controller `name`.
    pub fn spawn(&mut self, name: String, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Resolves when the first task ends — returning or panicking — naming it. Never resolves
    /// while all run.
    pub async fn first_stopped(&mut self) -> ControllerStopped {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, cause) = match joined {
            Ok((id, ())) => (id, "ended on its own".to_string()),
            Err(err) if err.is_panic() => (err.id(), format!("panicked: {}", panic_text(err))),
            Err(err) => (err.id(), "was cancelled".to_string()),
        };
        let controller = self.names.remove(&id).unwrap_or_else(|| "unknown".into());
        ControllerStopped { controller, cause }
    }

    /// Cancels every task at its current await point and waits until all are gone.
    pub async fn abort(&mut self) {
        self.tasks.shutdown().await;
    }

    async fn all_stopped(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits up to `within` for every task to end; whether they all did.
    pub async fn drain(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.all_stopped())
            .await
            .is_ok()
    }
}

/// A controller task that ended while the operator was meant to run.
#[derive(Debug, thiserror::Error)]
#[error("controller {controller} {cause}")]
pub struct ControllerStopped {
    pub controller: String,
    pub cause: String,
}

/// The message a panic was raised with.
fn panic_text(err: task::JoinError) -> String {
    let payload = err.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Binds `/metrics`, `/livez` and `/readyz` and serves them until `stop`.
async fn serve(
    args: &RunArgs,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    stop: CancellationToken,
) -> Result<JoinHandle<std::io::Result<()>>, OperatorError> {
    let (addr, serve) = http::bind(args.metrics_addr, metrics, readiness, stop)
        .await
        .map_err(|source| OperatorError::Http {
            addr: args.metrics_addr,
            source,
        })?;
    info!(%addr, "serving /metrics, /livez and /readyz");
    Ok(tokio::spawn(serve))
}

/// Joins the election for the configured Lease.
async fn join_election(args: &RunArgs, client: Client) -> Result<leader::Election, OperatorError> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let identity = args
        .leader_identity
        .clone()
        .unwrap_or_else(leader::default_identity);
    let elected = leader::Election::start(client, &namespace, &args.lease_name, &identity);
    info!(
        identity,
        namespace,
        lease = args.lease_name,
        "waiting for the leader lease"
    );
    Ok(elected)
}

/// The operator's own namespace: the pod's, else the Lease's, else `default`.
fn own_namespace(pod: Option<String>, lease: Option<String>) -> String {
    pod.or(lease).unwrap_or_else(|| "default".into())
}

/// Reads (creating it once) the key of template fingerprints from the operator's namespace.
async fn load_hash_key(args: &RunArgs, client: &Client) -> Result<HashKey, OperatorError> {
    let pod = std::env::var("POD_NAMESPACE").ok();
    let namespace = own_namespace(pod, args.leader_election_namespace.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    Ok(hash_key::load_or_create(&secrets, &namespace, &args.hash_key_secret).await?)
}

/// The three controllers' shared contexts.
struct Contexts {
    links: Arc<linked_account::Context>,
    bulks: Arc<bulk_registration::Context>,
    members: Arc<member_account::Context>,
}

fn contexts(
    args: &RunArgs,
    client: &Client,
    aws: Arc<AwsClients>,
    hash_key: HashKey,
    metrics: &Arc<Metrics>,
    gate: &Arc<Gate>,
) -> Contexts {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "account-linker".into(),
            instance: args
                .leader_identity
                .clone()
                .or_else(|| std::env::var("POD_NAME").ok()),
        },
    );
    // Region and partition both come from the region the SDK resolved.
    let region = aws.region.clone();
    let partition = aws.partition.as_str().to_string();
    let bulks = Arc::new(bulk_registration::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        bulk_registration::Settings {
            region,
            partition: partition.clone(),
            poll_interval: args.stackset_poll_interval.max(Duration::from_millis(200)),
            resync_interval: args.bulk_resync_interval.max(Duration::from_secs(1)),
            max_targets: usize::try_from(args.max_targets).unwrap_or(usize::MAX),
            hub_role_arn: args.hub_role_arn.clone(),
            hash_key,
            cluster_id: args.cluster_id.clone().unwrap_or_default(),
            drift_check_interval: args.drift_check_interval,
        },
        metrics.clone(),
        gate.clone(),
    ));
    let members = Arc::new(member_account::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        member_account::Settings {
            poll_interval: args.account_poll_interval.max(Duration::from_millis(200)),
            cluster_id: args.cluster_id.clone().unwrap_or_default(),
            ..member_account::Settings::default()
        },
        metrics.clone(),
        gate.clone(),
    ));
    let links = Arc::new(linked_account::Context::new(
        client.clone(),
        aws.clone(),
        aws,
        recorder,
        linked_account::Settings {
            access_denied_grace: args.access_denied_grace,
            sts_requests_per_second: args.sts_requests_per_second,
            sts_concurrency: usize::from(args.sts_concurrency),
            partition,
            default_verify_interval: args.default_verify_interval,
        },
        metrics.clone(),
        gate.clone(),
    ));
    Contexts {
        links,
        bulks,
        members,
    }
}

/// Namespaced APIs in `ns`, or cluster-wide ones when `ns` is `None`.
fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts the three controllers for every watched namespace (one set cluster-wide when none
/// is configured).
fn start_controllers(
    args: &RunArgs,
    client: &Client,
    aws: Arc<AwsClients>,
    hash_key: HashKey,
    metrics: &Arc<Metrics>,
    readiness: &Readiness,
    stop: &CancellationToken,
) -> Controllers {
    let namespaces: Vec<Option<&str>> = if args.watch_namespaces.is_empty() {
        vec![None]
    } else {
        args.watch_namespaces
            .iter()
            .map(|n| Some(n.as_str()))
            .collect()
    };
    let name = |kind: &str, ns: Option<&str>| match ns {
        Some(ns) => format!("{kind}/{ns}"),
        None => kind.to_string(),
    };
    // Every controller is registered before any starts, so the first cache to sync cannot
    // make the replica ready alone.
    let tenancy_ready = (args.tenancy == Tenancy::Enforced).then(|| readiness.register("tenancy"));
    let ready: Vec<_> = namespaces
        .iter()
        .map(|&ns| {
            [
                readiness.register(name(bulk_registration::CONTROLLER, ns)),
                readiness.register(name(member_account::CONTROLLER, ns)),
                readiness.register(name(linked_account::CONTROLLER, ns)),
            ]
        })
        .collect();
    let concurrency = args.max_concurrent_reconciles;
    let stopped = || {
        let token = stop.clone();
        async move { token.cancelled().await }
    };
    let mut controllers = Controllers::default();
    let gate = match tenancy_ready {
        None => Gate::disabled(),
        Some(synced) => {
            // One watch of LinkPolicies and Namespaces serves every controller.
            let (gate, watch) = tenancy::watch::start(client, aws.clone(), synced);
            let token = stop.clone();
            controllers.spawn("tenancy".into(), async move {
                tokio::select! {
                    () = watch => {}
                    () = token.cancelled() => {}
                }
            });
            gate
        }
    };
    let ctx = contexts(args, client, aws, hash_key, metrics, &Arc::new(gate));
    for (ns, [bulk_ready, member_ready, link_ready]) in namespaces.into_iter().zip(ready) {
        // One trimmed LinkedAccount cache per namespace serves both controllers that read them.
        let (links, feeds, watch) = LinkCache::start(api::<LinkedAccount>(client, ns));
        let token = stop.clone();
        controllers.spawn(name("linkedaccount-cache", ns), async move {
            tokio::select! {
                () = watch => {}
                () = token.cancelled() => {}
            }
        });
        controllers.spawn(
            name(bulk_registration::CONTROLLER, ns),
            bulk_registration::run(
                ctx.bulks.clone(),
                api::<BulkRegistration>(client, ns),
                (links.clone(), feeds.owners),
                api::<ConfigMap>(client, ns),
                concurrency,
                bulk_ready,
                stopped(),
            ),
        );
        controllers.spawn(
            name(member_account::CONTROLLER, ns),
            member_account::run(
                ctx.members.clone(),
                api::<MemberAccount>(client, ns),
                api::<LinkedAccount>(client, ns),
                concurrency,
                member_ready,
                stopped(),
            ),
        );
        controllers.spawn(
            name(linked_account::CONTROLLER, ns),
            linked_account::run(
                ctx.links.clone(),
                links,
                feeds.reconcile,
                api::<Secret>(client, ns),
                concurrency,
                link_ready,
                stopped(),
            ),
        );
    }
    controllers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller that runs until the test ends.
    fn running() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    async fn supervised(controllers: &mut Controllers) -> Result<(), OperatorError> {
        let never = std::future::pending::<()>;
        tokio::time::timeout(
            Duration::from_secs(5),
            supervise(controllers, never(), never()),
        )
        .await
        .expect("the supervisor noticed within 5s")
    }

    #[test]
    fn the_hash_key_lives_in_the_pods_namespace_else_the_leases() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(own_namespace(some("ops"), some("lease")), "ops");
        assert_eq!(own_namespace(None, some("lease")), "lease");
        assert_eq!(own_namespace(None, None), "default");
    }

    #[tokio::test]
    async fn a_panicking_controller_stops_the_operator_with_its_name() {
        let mut controllers = Controllers::default();
        controllers.spawn("bulkregistration".into(), running());
        controllers.spawn("linkedaccount/team-a".into(), async {
            panic!("burst is at least 2");
        });
        let err = supervised(&mut controllers).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linkedaccount/team-a"), "{text}");
        assert!(text.contains("panicked: burst is at least 2"), "{text}");
    }

    #[tokio::test]
    async fn a_controller_ending_on_its_own_stops_the_operator() {
        let mut controllers = Controllers::default();
        controllers.spawn("linkedaccount".into(), running());
        controllers.spawn("memberaccount".into(), async {});
        let err = supervised(&mut controllers).await.unwrap_err();
        assert!(err.to_string().contains("memberaccount"), "{err}");
    }

    #[tokio::test]
    async fn a_signal_stops_the_operator_cleanly() {
        let mut controllers = Controllers::default();
        controllers.spawn("linkedaccount".into(), running());
        let outcome = supervise(&mut controllers, async {}, std::future::pending()).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(!controllers.drain(Duration::from_millis(10)).await);
    }
}
