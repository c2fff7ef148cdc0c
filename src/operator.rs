//! `account-linker run`: wires the pieces together — telemetry, the HTTP endpoints, leader
//! election, the AWS clients, one set of controllers per watched namespace — and decides when
//! the process stops: on SIGTERM/SIGINT (gracefully), when the lease is lost, or when a
//! controller stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};
use crate::aws::{AwsClients, AwsSettings};
use crate::config::RunArgs;
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
}

/// How long in-flight reconciles (and their status writes) get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the operator until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(args: RunArgs) -> Result<(), OperatorError> {
    telemetry::tracing::init(args.log_format, &args.log_level)?;
    let client = Client::try_default().await?;
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
        })
        .await,
    );
    let mut controllers = start_controllers(&args, &client, aws, &metrics, &readiness, &stop);
    info!("controllers started");

    let outcome = tokio::select! {
        _ = &mut signal => { info!("shutdown signal received"); Ok(()) }
        () = async {
            match lease.as_mut() {
                Some(l) => l.wait_until_lost().await,
                None => std::future::pending().await,
            }
        } => {
            error!("lost the leader lease");
            Err(OperatorError::LostLeadership)
        }
        _ = async { while controllers.join_next().await.is_some() {} } => {
            warn!("controllers stopped on their own");
            Ok(())
        }
    };

    // Stop taking work, let in-flight reconciles (and their status writes) finish, then hand
    // the lease over.
    readiness.shutting_down();
    stop.cancel();
    if tokio::time::timeout(DRAIN, async {
        while controllers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("controllers did not stop within 30s");
    }
    if let Some(lease) = lease {
        lease.release().await;
    }
    metrics.set_leader(false);
    let _ = http_task.await;
    info!("stopped");
    outcome
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
    let elected = leader::Election::start(client, &namespace, &args.lease_name, &identity).await?;
    info!(
        identity,
        namespace,
        lease = args.lease_name,
        "waiting for the leader lease"
    );
    Ok(elected)
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
    metrics: &Arc<Metrics>,
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
    let region = aws
        .config
        .region()
        .map_or_else(|| "us-east-1".to_string(), ToString::to_string);
    let partition = partition_of(args.aws_region.as_deref());
    let bulks = Arc::new(bulk_registration::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        bulk_registration::Settings {
            region,
            partition: partition.clone(),
            poll_interval: args.stackset_poll_interval.max(Duration::from_millis(200)),
            resync_interval: args.bulk_resync_interval.max(Duration::from_secs(1)),
        },
        metrics.clone(),
    ));
    let members = Arc::new(member_account::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        member_account::Settings {
            poll_interval: args.account_poll_interval.max(Duration::from_millis(200)),
            ..member_account::Settings::default()
        },
        metrics.clone(),
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
    metrics: &Arc<Metrics>,
    readiness: &Readiness,
    stop: &CancellationToken,
) -> JoinSet<()> {
    let ctx = contexts(args, client, aws, metrics);
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
    let mut controllers = JoinSet::new();
    for (ns, [bulk_ready, member_ready, link_ready]) in namespaces.into_iter().zip(ready) {
        controllers.spawn(bulk_registration::run(
            ctx.bulks.clone(),
            api::<BulkRegistration>(client, ns),
            api::<LinkedAccount>(client, ns),
            api::<ConfigMap>(client, ns),
            concurrency,
            bulk_ready,
            stopped(),
        ));
        controllers.spawn(member_account::run(
            ctx.members.clone(),
            api::<MemberAccount>(client, ns),
            api::<LinkedAccount>(client, ns),
            concurrency,
            member_ready,
            stopped(),
        ));
        controllers.spawn(linked_account::run(
            ctx.links.clone(),
            api::<LinkedAccount>(client, ns),
            api::<Secret>(client, ns),
            concurrency,
            link_ready,
            stopped(),
        ));
    }
    controllers
}

/// The ARN partition of a region.
fn partition_of(region: Option<&str>) -> String {
    match region {
        Some(r) if r.starts_with("cn-") => "aws-cn".into(),
        Some(r) if r.starts_with("us-gov-") => "aws-us-gov".into(),
        _ => "aws".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_regions() {
        assert_eq!(partition_of(Some("eu-west-1")), "aws");
        assert_eq!(partition_of(Some("cn-north-1")), "aws-cn");
        assert_eq!(partition_of(Some("us-gov-west-1")), "aws-us-gov");
        assert_eq!(partition_of(None), "aws");
    }
}
