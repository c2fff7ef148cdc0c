//! The operator runtime behind `account-linker run`: configuration, telemetry, HTTP endpoints,
//! leader election, the controllers, and graceful shutdown.

pub mod http;
pub mod leader;
pub mod readiness;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};
use crate::aws::{AwsClients, AwsSettings};
use crate::controller::{bulk_registration, linked_account, member_account};
pub use readiness::Readiness;

use crate::telemetry::Metrics;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Flags of `account-linker run`. Every flag falls back to an environment variable.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// AWS region of the hub; STS calls use its regional endpoint.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// AWS endpoint override, for emulators such as moto or LocalStack.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Namespaces to watch (repeat the flag, or comma-separate); all namespaces when empty.
    #[arg(
        long = "watch-namespace",
        env = "ACCOUNT_LINKER_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,

    /// `verifyInterval` of LinkedAccounts that do not set one (Go duration, at least 1m).
    #[arg(long, env = "ACCOUNT_LINKER_DEFAULT_VERIFY_INTERVAL", default_value = "30m", value_parser = parse_interval_flag)]
    pub default_verify_interval: Duration,

    /// Global STS budget in requests per second (AssumeRole and GetCallerIdentity each count).
    #[arg(long, env = "ACCOUNT_LINKER_STS_REQUESTS_PER_SECOND", default_value_t = NonZeroU32::new(10).expect("non-zero"))]
    pub sts_requests_per_second: NonZeroU32,

    /// Most role verifications in flight at once.
    #[arg(long, env = "ACCOUNT_LINKER_STS_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub sts_concurrency: u16,

    /// Most reconciles in flight per controller.
    #[arg(long, env = "ACCOUNT_LINKER_MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// How long AccessDenied / RegionDisabled are retried after a role is (re)deployed before a
    /// LinkedAccount is Stalled (IAM is eventually consistent). Go duration.
    #[arg(long, env = "ACCOUNT_LINKER_ACCESS_DENIED_GRACE", default_value = "2m", value_parser = parse_duration)]
    pub access_denied_grace: Duration,

    /// How often a StackSet operation in flight is polled (Go duration). Reconciles never wait
    /// on AWS; they look again after this long.
    #[arg(long, env = "ACCOUNT_LINKER_STACKSET_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub stackset_poll_interval: Duration,

    /// How often a settled BulkRegistration is compared with AWS again, to pick up accounts
    /// that joined a target OU and instances changed outside the operator (Go duration).
    #[arg(long, env = "ACCOUNT_LINKER_BULK_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub bulk_resync_interval: Duration,

    /// How often a MemberAccount's CreateAccount request in progress is polled (Go duration).
    #[arg(long, env = "ACCOUNT_LINKER_ACCOUNT_POLL_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub account_poll_interval: Duration,

    /// Elect a leader through a coordination.k8s.io Lease, so only one replica writes.
    #[arg(long, env = "ACCOUNT_LINKER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the Lease; defaults to the pod's namespace (POD_NAMESPACE) or `default`.
    #[arg(long, env = "ACCOUNT_LINKER_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(
        long,
        env = "ACCOUNT_LINKER_LEASE_NAME",
        default_value = "account-linker"
    )]
    pub lease_name: String,

    /// Identity of this replica in the Lease; defaults to POD_NAME, else hostname and PID.
    #[arg(long, env = "ACCOUNT_LINKER_LEADER_IDENTITY")]
    pub leader_identity: Option<String>,

    /// Address of /metrics, /livez and /readyz.
    #[arg(
        long,
        env = "ACCOUNT_LINKER_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "ACCOUNT_LINKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `account_linker=debug,kube=info`.
    #[arg(long, env = "ACCOUNT_LINKER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

fn parse_interval_flag(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(60) {
        return Err("must be at least 1m".into());
    }
    Ok(d)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|e| format!("not a Go duration such as 30s or 2m: {e}"))
}

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid log filter {filter:?}: {source}")]
    LogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
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

fn init_telemetry(args: &RunArgs) -> Result<(), RuntimeError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|source| {
        RuntimeError::LogFilter {
            filter: args.log_level.clone(),
            source,
        }
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second initialisation (tests calling run twice) keeps the first subscriber.
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs the operator until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(args: RunArgs) -> Result<(), RuntimeError> {
    init_telemetry(&args)?;
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();
    let stop = CancellationToken::new();

    let (addr, serve) = http::bind(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        stop.clone(),
    )
    .await
    .map_err(|source| RuntimeError::Http {
        addr: args.metrics_addr,
        source,
    })?;
    info!(%addr, "serving /metrics, /livez and /readyz");
    let http_task = tokio::spawn(serve);

    let signal = shutdown_signal();
    tokio::pin!(signal);

    // Standby replicas are ready: they serve metrics and wait for the lease.
    let mut lease = None;
    if args.leader_elect {
        readiness.set_standby(true);
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let identity = args
            .leader_identity
            .clone()
            .unwrap_or_else(leader::default_identity);
        let mut elected =
            leader::Election::start(client.clone(), &namespace, &args.lease_name, &identity)
                .await?;
        info!(%identity, %namespace, lease = %args.lease_name, "waiting for the leader lease");
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
        info!(%identity, "became leader");
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
    let bulk_ctx = Arc::new(bulk_registration::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        bulk_registration::Settings {
            region: aws
                .config
                .region()
                .map_or_else(|| "us-east-1".to_string(), ToString::to_string),
            partition: partition_of(args.aws_region.as_deref()),
            poll_interval: args.stackset_poll_interval.max(Duration::from_millis(200)),
            resync_interval: args.bulk_resync_interval.max(Duration::from_secs(1)),
        },
        metrics.clone(),
    ));
    let member_ctx = Arc::new(member_account::Context::new(
        client.clone(),
        aws.clone(),
        recorder.clone(),
        member_account::Settings {
            poll_interval: args.account_poll_interval.max(Duration::from_millis(200)),
            ..member_account::Settings::default()
        },
        metrics.clone(),
    ));
    let settings = linked_account::Settings {
        access_denied_grace: args.access_denied_grace,
        sts_requests_per_second: args.sts_requests_per_second,
        sts_concurrency: usize::from(args.sts_concurrency),
        partition: partition_of(args.aws_region.as_deref()),
        default_verify_interval: args.default_verify_interval,
    };
    let ctx = Arc::new(linked_account::Context::new(
        client.clone(),
        aws.clone(),
        aws.clone(),
        recorder,
        settings,
        metrics.clone(),
    ));

    let mut controllers = JoinSet::new();
    let namespaces: Vec<Option<String>> = if args.watch_namespaces.is_empty() {
        vec![None]
    } else {
        args.watch_namespaces.iter().cloned().map(Some).collect()
    };
    // Every controller is registered before any starts, so the first cache to sync cannot
    // make the replica ready alone.
    let ready: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            let name = |kind: &str| match ns {
                Some(ns) => format!("{kind}/{ns}"),
                None => kind.to_string(),
            };
            [
                readiness.register(name(bulk_registration::CONTROLLER)),
                readiness.register(name(member_account::CONTROLLER)),
                readiness.register(name(linked_account::CONTROLLER)),
            ]
        })
        .collect();
    for (ns, [bulk_ready, member_ready, link_ready]) in namespaces.into_iter().zip(ready) {
        let (links, secrets) = match &ns {
            Some(ns) => (
                Api::<LinkedAccount>::namespaced(client.clone(), ns),
                Api::<Secret>::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let (bulks, children, config_maps) = match &ns {
            Some(ns) => (
                Api::<BulkRegistration>::namespaced(client.clone(), ns),
                Api::<LinkedAccount>::namespaced(client.clone(), ns),
                Api::<ConfigMap>::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
        let token = stop.clone();
        controllers.spawn(bulk_registration::run(
            bulk_ctx.clone(),
            bulks,
            children,
            config_maps,
            args.max_concurrent_reconciles,
            bulk_ready,
            async move { token.cancelled().await },
        ));
        let (members, member_children) = match &ns {
            Some(ns) => (
                Api::<MemberAccount>::namespaced(client.clone(), ns),
                Api::<LinkedAccount>::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let token = stop.clone();
        controllers.spawn(member_account::run(
            member_ctx.clone(),
            members,
            member_children,
            args.max_concurrent_reconciles,
            member_ready,
            async move { token.cancelled().await },
        ));
        let token = stop.clone();
        controllers.spawn(linked_account::run(
            ctx.clone(),
            links,
            secrets,
            args.max_concurrent_reconciles,
            link_ready,
            async move { token.cancelled().await },
        ));
    }
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
            Err(RuntimeError::LostLeadership)
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
    if tokio::time::timeout(Duration::from_secs(30), async {
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
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["x", "--watch-namespace", "a,b", "--leader-elect=false"]).unwrap();
        assert_eq!(cli.run.watch_namespaces, ["a", "b"]);
        assert!(!cli.run.leader_elect);
        assert_eq!(cli.run.access_denied_grace, Duration::from_secs(120));
        assert_eq!(cli.run.default_verify_interval, Duration::from_secs(1800));
        assert_eq!(cli.run.lease_name, "account-linker");
        assert_eq!(cli.run.log_format, LogFormat::Json);
    }

    #[test]
    fn invalid_values_are_rejected_with_a_reason() {
        let err = Cli::try_parse_from(["x", "--access-denied-grace", "soon"]).unwrap_err();
        assert!(err.to_string().contains("Go duration"), "{err}");
        assert!(Cli::try_parse_from(["x", "--sts-requests-per-second", "0"]).is_err());
        let err = Cli::try_parse_from(["x", "--default-verify-interval", "30s"]).unwrap_err();
        assert!(err.to_string().contains("at least 1m"), "{err}");
        assert!(Cli::try_parse_from(["x", "--max-concurrent-reconciles", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn partitions_follow_regions() {
        assert_eq!(partition_of(Some("eu-west-1")), "aws");
        assert_eq!(partition_of(Some("cn-north-1")), "aws-cn");
        assert_eq!(partition_of(Some("us-gov-west-1")), "aws-us-gov");
        assert_eq!(partition_of(None), "aws");
    }
}
