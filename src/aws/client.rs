//! AWS SDK clients, built once from the standard provider chain and shared.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where and how the operator talks to AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// Region of the hub (and of STS calls: regional endpoints are preferred).
    pub region: Option<String>,
    /// Endpoint override for emulators (moto, LocalStack); `None` talks to AWS.
    pub endpoint_url: Option<String>,
}

/// The SDK clients the controllers use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub config: SdkConfig,
    pub sts: aws_sdk_sts::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
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
        // Organizations is a global service homed in us-east-1 (aws partition).
        let organizations = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(&config)
                .region(Region::from_static("us-east-1"))
                .build(),
        );
        Self {
            sts: aws_sdk_sts::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            organizations,
            config,
        }
    }
}
