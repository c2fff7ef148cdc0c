//! The flags of `account-linker run`. Every flag falls back to an environment variable (the
//! chart sets them; `hack/chart-test.sh` checks each flag's variable), and each value is
//! checked here, so a bad setting stops the operator before it touches anything.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Whether LinkPolicies decide what the objects of each namespace may ask of AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tenancy {
    /// An object acts only when a LinkPolicy selecting its namespace permits all it asks.
    Enforced,
    /// Every object may use all of the operator's AWS rights: one tenant only.
    Disabled,
}

/// Flags of `account-linker run`. Every flag falls back to an environment variable.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// AWS region of the hub; STS calls use its regional endpoint. Unset, the SDK's chain
    /// decides (profile, instance metadata). The ARN partition (aws, aws-cn, aws-us-gov) and the
    /// Organizations endpoint follow from the region resolved either way.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// AWS endpoint override, for emulators such as moto or LocalStack.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// How long one attempt of an AWS call may take before it counts as lost and is retried
    /// once (Go duration). Keeps a slow or hung AWS endpoint from holding a reconcile.
    #[arg(long, env = "ACCOUNT_LINKER_AWS_ATTEMPT_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub aws_attempt_timeout: Duration,

    /// How long an AWS call may take in all, its retry included (Go duration; at least the
    /// attempt timeout). A call over it fails as transient and is retried with backoff.
    #[arg(long, env = "ACCOUNT_LINKER_AWS_OPERATION_TIMEOUT", default_value = "25s", value_parser = parse_timeout)]
    pub aws_operation_timeout: Duration,

    /// This cluster's identity, written into every owner tag in AWS (and hashed into derived
    /// StackSet names), so that clusters with the same namespaces and names never take each
    /// other's StackSets or accounts. Defaults to the UID of the `kube-system` namespace, read
    /// once at start. Up to 128 characters of `[A-Za-z0-9_.:/=+@-]`; keep it stable: a changed
    /// identity owns nothing that the old one created.
    #[arg(long, env = "ACCOUNT_LINKER_CLUSTER_ID", value_parser = parse_cluster_id)]
    pub cluster_id: Option<String>,

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

    /// Most target accounts one BulkRegistration may resolve to; a registration over it is
    /// Stalled (`TooManyTargets`) before any StackSet call.
    #[arg(long, env = "ACCOUNT_LINKER_MAX_TARGETS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_targets: u32,

    /// For tests only (hidden, no environment variable): replaces the `drift.checkInterval` of
    /// every BulkRegistration that has one, below the API's 10m minimum (Go duration).
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub drift_check_interval: Option<Duration>,

    /// The role the built-in template trusts, as a full IAM role ARN. Defaults to the
    /// operator's own role as GetCallerIdentity reports it, which omits a role's path: set it
    /// when the operator's role has one.
    #[arg(long, env = "ACCOUNT_LINKER_HUB_ROLE_ARN", value_parser = parse_role_arn)]
    pub hub_role_arn: Option<String>,

    /// Secret holding the key of template fingerprints (`status.templateHash`), in the
    /// operator's namespace (POD_NAMESPACE, else the leader election namespace, else `default`).
    /// Created when missing; never rewritten.
    #[arg(
        long,
        env = "ACCOUNT_LINKER_HASH_KEY_SECRET",
        default_value = "account-linker-hash-key"
    )]
    pub hash_key_secret: String,

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

    /// `enforced`: objects act only as far as a LinkPolicy selecting their namespace permits
    /// (a namespace no policy selects may do nothing). `disabled`: a single-tenant mode in which
    /// every namespace may use all of the operator's AWS rights.
    #[arg(long, env = "ACCOUNT_LINKER_TENANCY", value_enum, default_value_t = Tenancy::Enforced)]
    pub tenancy: Tenancy,

    /// Log format.
    #[arg(long, env = "ACCOUNT_LINKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `account_linker=debug,kube=info`.
    #[arg(long, env = "ACCOUNT_LINKER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// An IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path/>name`.
fn parse_role_arn(text: &str) -> Result<String, String> {
    let valid = text.split_once(":iam::").is_some_and(|(head, tail)| {
        let partition = head.strip_prefix("arn:").unwrap_or_default();
        let (account, role) = tail.split_once(":role/").unwrap_or_default();
        partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !role.is_empty()
            && !role.ends_with('/')
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
    });
    if valid {
        Ok(text.to_string())
    } else {
        Err("not an IAM role ARN such as arn:aws:iam::123456789012:role/path/name".into())
    }
}

fn parse_cluster_id(text: &str) -> Result<String, String> {
    crate::api::labels::check_cluster_id(text).map(|()| text.to_string())
}

fn parse_interval_flag(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(60) {
        return Err("must be at least 1m".into());
    }
    Ok(d)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&d) {
        return Err("must be between 100ms and 10m".into());
    }
    Ok(d)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|e| format!("not a Go duration such as 30s or 2m: {e}"))
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
        assert_eq!(cli.run.tenancy, Tenancy::Enforced);
        let single = Cli::try_parse_from(["x", "--tenancy", "disabled"]).unwrap();
        assert_eq!(single.run.tenancy, Tenancy::Disabled);
        assert_eq!(cli.run.max_targets, 10_000);
        assert_eq!(cli.run.hub_role_arn, None);
        assert_eq!(cli.run.hash_key_secret, "account-linker-hash-key");
        assert_eq!(cli.run.aws_attempt_timeout, Duration::from_secs(10));
        assert_eq!(cli.run.aws_operation_timeout, Duration::from_secs(25));
    }

    #[test]
    fn hub_role_arns_are_full_role_arns() {
        let parse = |arn: &str| Cli::try_parse_from(["x", "--hub-role-arn", arn]);
        for good in [
            "arn:aws:iam::123456789012:role/account-linker",
            "arn:aws-cn:iam::123456789012:role/service-role/account-linker",
        ] {
            assert_eq!(parse(good).unwrap().run.hub_role_arn.as_deref(), Some(good));
        }
        for bad in [
            "account-linker",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::1234:role/x",
            "arn:aws:sts::123456789012:assumed-role/x/s",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("IAM role ARN"), "{bad}: {err}");
        }
        assert!(Cli::try_parse_from(["x", "--max-targets", "0"]).is_err());
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
        for bad in ["", "prod cluster", "prod,eu"] {
            let err = Cli::try_parse_from(["x", "--cluster-id", bad]).unwrap_err();
            assert!(err.to_string().contains("--cluster-id"), "{err}");
        }
        let cli = Cli::try_parse_from(["x", "--cluster-id", "eks:eu-west-1/prod"]).unwrap();
        assert_eq!(cli.run.cluster_id.as_deref(), Some("eks:eu-west-1/prod"));
        assert!(Cli::try_parse_from(["x", "--tenancy", "off"]).is_err());
        for bad in ["0s", "50ms", "11m", "slow"] {
            let err = Cli::try_parse_from(["x", "--aws-attempt-timeout", bad]).unwrap_err();
            assert!(err.to_string().contains("--aws-attempt-timeout"), "{err}");
        }
        let cli = Cli::try_parse_from(["x", "--aws-operation-timeout", "1m"]).unwrap();
        assert_eq!(cli.run.aws_operation_timeout, Duration::from_secs(60));
    }
}
