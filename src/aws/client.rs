//! AWS SDK clients, built once from the standard provider chain and shared. The region comes
//! from the chain (the `--aws-region` flag, `AWS_REGION`, a profile, instance metadata — whatever
//! set it), and everything that depends on where the hub is (the ARN partition, the home of the
//! global Organizations endpoint) is derived from that one resolved region.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The region assumed when the provider chain resolves none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long one attempt of a call may take (`--aws-attempt-timeout`). Every call the operator
/// makes answers in well under a second when AWS is healthy; an answer this late is treated as
/// lost, so a hung connection costs one attempt, never a reconcile.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call may take with its retry (`--aws-operation-timeout`): bounds how long a
/// reconcile (and the STS concurrency slot of a verification) can wait on AWS.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(25);
/// Attempts per call. The controllers own backoff across reconciles, so the SDK only absorbs a
/// single blip and then reports the failure for classification.
pub const MAX_ATTEMPTS: u32 = 2;
/// How long a TCP connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and how the operator talks to AWS.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Region of the hub (and of STS calls: regional endpoints are preferred).
    pub region: Option<String>,
    /// Endpoint override for emulators (moto, LocalStack); `None` talks to AWS.
    pub endpoint_url: Option<String>,
    /// Limit of one attempt of a call.
    pub attempt_timeout: Duration,
    /// Limit of a call, its retry included.
    pub operation_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

impl AwsSettings {
    /// Retries of every client: [`MAX_ATTEMPTS`] attempts, the SDK's standard backoff.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
    }

    /// Timeouts of every client. The whole call never waits longer than an attempt may, so a
    /// smaller operation timeout wins.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(self.attempt_timeout))
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout.max(self.attempt_timeout))
            .build()
    }
}

/// An AWS partition: ARNs name it, and global services have one home region in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    /// The partition a region belongs to.
    pub fn of(region: &str) -> Self {
        if region.starts_with("cn-") {
            Self::AwsCn
        } else if region.starts_with("us-gov-") {
            Self::AwsUsGov
        } else {
            Self::Aws
        }
    }

    /// The partition as ARNs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
        }
    }

    /// Where the partition's Organizations endpoint lives.
    pub fn organizations_region(self) -> &'static str {
        match self {
            Self::Aws => "us-east-1",
            Self::AwsCn => "cn-northwest-1",
            Self::AwsUsGov => "us-gov-west-1",
        }
    }
}

/// The SDK clients the controllers use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub config: SdkConfig,
    /// The hub's region: where StackSets live and STS is called.
    pub region: String,
    /// The partition of [`AwsClients::region`].
    pub partition: Partition,
    pub sts: aws_sdk_sts::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// Who counts the calls (see [`super::metered`]).
    pub(crate) observer: super::metered::Observer,
    /// Account names read in OU listings ([`super::organizations::SeenNames`]).
    pub(crate) seen_names: super::organizations::SeenNames,
}

impl AwsClients {
    /// Loads credentials from the standard chain (environment, profile, web identity / IRSA,
    /// EKS Pod Identity, instance metadata) with explicit retries and timeouts.
    pub async fn load(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(settings.retry_config())
            .timeout_config(settings.timeout_config());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        Self::from_config(loader.load().await)
    }

    /// Builds the clients from an already loaded configuration.
    pub fn from_config(config: SdkConfig) -> Self {
        let region = config
            .region()
            .map_or_else(|| DEFAULT_REGION.to_string(), ToString::to_string);
        let partition = Partition::of(&region);
        // Organizations is a global service with one home per partition.
        let organizations = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(&config)
                .region(Region::from_static(partition.organizations_region()))
                .build(),
        );
        Self {
            sts: aws_sdk_sts::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            organizations,
            region,
            partition,
            config,
            observer: super::metered::Observer::default(),
            seen_names: super::organizations::SeenNames::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(region: Option<&'static str>) -> AwsClients {
        let mut config = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
        if let Some(region) = region {
            config = config.region(Region::from_static(region));
        }
        AwsClients::from_config(config.build())
    }

    fn organizations_region(clients: &AwsClients) -> Option<String> {
        clients
            .organizations
            .config()
            .region()
            .map(ToString::to_string)
    }

    /// The clients built for `region` (None: no region anywhere) resolve this region and
    /// partition, and call Organizations in `organizations`.
    fn assert_homes(
        region: Option<&'static str>,
        want: (&str, Partition, &str),
        organizations: &str,
    ) {
        let c = clients(region);
        assert_eq!((c.region.as_str(), c.partition, c.partition.as_str()), want);
        assert_eq!(organizations_region(&c).as_deref(), Some(organizations));
    }

    #[test]
    fn the_aws_partition_calls_organizations_in_us_east_1() {
        assert_homes(
            Some("eu-west-1"),
            ("eu-west-1", Partition::Aws, "aws"),
            "us-east-1",
        );
    }

    #[test]
    fn the_china_partition_calls_organizations_in_cn_northwest_1() {
        let want = ("cn-north-1", Partition::AwsCn, "aws-cn");
        assert_homes(Some("cn-north-1"), want, "cn-northwest-1");
    }

    #[test]
    fn the_govcloud_partition_calls_organizations_in_us_gov_west_1() {
        let want = ("us-gov-east-1", Partition::AwsUsGov, "aws-us-gov");
        assert_homes(Some("us-gov-east-1"), want, "us-gov-west-1");
    }

    #[test]
    fn every_call_is_bounded_in_time_and_attempts() {
        let defaults = AwsSettings::default();
        let t = defaults.timeout_config();
        assert_eq!(t.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(t.operation_attempt_timeout(), Some(DEFAULT_ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(DEFAULT_OPERATION_TIMEOUT));
        assert_eq!(defaults.retry_config().max_attempts(), MAX_ATTEMPTS);
        // (attempt, operation) → (connect, attempt, operation) as configured.
        let secs = Duration::from_secs;
        let rows = [
            ((secs(2), secs(5)), (secs(2), secs(2), secs(5))),
            ((secs(10), secs(4)), (secs(3), secs(10), secs(10))),
        ];
        for ((attempt, operation), (connect, want_attempt, want_operation)) in rows {
            let t = AwsSettings {
                attempt_timeout: attempt,
                operation_timeout: operation,
                ..AwsSettings::default()
            }
            .timeout_config();
            assert_eq!(t.connect_timeout(), Some(connect));
            assert_eq!(t.operation_attempt_timeout(), Some(want_attempt));
            assert_eq!(t.operation_timeout(), Some(want_operation));
        }
    }

    #[test]
    fn no_region_anywhere_means_us_east_1() {
        assert_homes(None, ("us-east-1", Partition::Aws, "aws"), "us-east-1");
    }
}
