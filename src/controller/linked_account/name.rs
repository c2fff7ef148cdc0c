//! The account's display name: `spec.displayName`, else the name Organizations gives it (when
//! the hub may ask), else the account ID; looked up once per account per process. While
//! Organizations fails transiently the name status already shows stays.

use tracing::debug;

use super::Context;
use crate::api::LinkedAccount;

/// `spec.displayName`, else the Organizations account name when the hub may read it, else the
/// account ID. Look-ups are cached per account for the life of the process. `shown` is the
/// name status holds: kept while the look-up fails transiently (an outage must not rename the
/// account to its ID and back).
pub(super) async fn account_name(
    link: &LinkedAccount,
    ctx: &Context,
    shown: Option<&str>,
) -> String {
    if let Some(name) = &link.spec.display_name {
        return name.clone();
    }
    let account = &link.spec.account_id;
    let cached = ctx
        .names
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(account)
        .cloned();
    let name = match cached {
        Some(name) => name,
        None => match ctx.directory.account_name(account).await {
            Ok(name) => {
                ctx.names
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(account.clone(), name.clone());
                name
            }
            Err(err) => {
                debug!(account, error = %err, "account name not available from Organizations");
                let (name, settled) = after_failure(err.class.is_retryable(), shown, account);
                if settled {
                    ctx.names
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(account.clone(), None);
                }
                return name;
            }
        },
    };
    name.unwrap_or_else(|| account.clone())
}

/// The name to show after a failed look-up, and whether the failure is settled (cached: not
/// asked again). A transient failure keeps the name shown and asks again next time; a refusal
/// (not being allowed to read Organizations is normal for a hub that is not the management
/// account) falls back to the account ID for good.
fn after_failure(retryable: bool, shown: Option<&str>, account: &str) -> (String, bool) {
    if retryable {
        (shown.unwrap_or(account).to_string(), false)
    } else {
        (account.to_string(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::after_failure;

    #[test]
    fn a_transient_failure_keeps_the_name_shown_and_a_refusal_settles_on_the_id() {
        // (retryable, shown) → (name, settled)
        let rows = [
            ((true, Some("prod")), ("prod", false)),
            ((true, None), ("111111111111", false)),
            ((false, Some("prod")), ("111111111111", true)),
            ((false, None), ("111111111111", true)),
        ];
        for ((retryable, shown), (name, settled)) in rows {
            let got = after_failure(retryable, shown, "111111111111");
            assert_eq!(got, (name.to_string(), settled), "{retryable} {shown:?}");
        }
    }
}
