//! Log output: JSON (one object per line, fields flattened, for log pipelines) or text, filtered
//! by `--log-level`.

use crate::config::LogFormat;

/// `--log-level` is not a valid filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?}: {source}")]
pub struct InvalidLogFilter {
    filter: String,
    #[source]
    source: tracing_subscriber::filter::ParseError,
}

/// Installs the global subscriber. A second initialisation (tests running the operator twice
/// in one process) keeps the first subscriber.
pub fn init(format: LogFormat, filter: &str) -> Result<(), InvalidLogFilter> {
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(filter).map_err(|source| InvalidLogFilter {
            filter: filter.to_string(),
            source,
        })?;
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_refused_with_its_text() {
        let err = init(LogFormat::Text, "account_linker=loud").unwrap_err();
        assert!(err.to_string().contains("account_linker=loud"), "{err}");
    }
}
