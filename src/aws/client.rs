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

/// Where and how the operator talks to AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// Region of the hub (and of STS calls: regional endpoints are preferred).
    pub region: Option<String>,
    /// Endpoint override for emulators (moto, LocalStack); `None` talks to AWS.
    pub endpoint_url: Option<String>,
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
}

impl AwsClients {
    /// Loads credentials from the standard chain (environment, profile, web identity / IRSA,
    /// EKS Pod Identity, instance metadata) with explicit retries and timeouts.
    pub async fn load(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Two attempts: the controllers own backoff across reconciles, so the SDK only
            // absorbs a single blip and then reports the failure for classification.
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(25))
                    .build(),
            );
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
    fn no_region_anywhere_means_us_east_1() {
        assert_homes(None, ("us-east-1", Partition::Aws, "aws"), "us-east-1");
    }
}
