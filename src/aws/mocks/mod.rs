//! The SDK-backed adapters against a replay HTTP client ([`wire::Wire`]): what each call sends,
//! how each answer and each AWS error, as AWS writes them on the wire, map to the operator's
//! types and classes, and that every call, reads and pages included, is counted once.

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};

use super::AwsClients;
use super::metered::Recorder;
use wire::Wire;

mod organizations;
mod stacksets;
mod sts;
mod wire;

/// Clients that talk to `wire`, without retries, and the record of their calls.
fn clients(wire: &Wire) -> (AwsClients, Arc<Recorder>) {
    let credentials = Credentials::new("AKIAHUB", "secret", None, None, "test");
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(RetryConfig::disabled())
        .http_client(wire.clone())
        .build();
    let recorder = Arc::new(Recorder::default());
    let aws = AwsClients::from_config(config).with_observer(recorder.clone());
    (aws, recorder)
}
