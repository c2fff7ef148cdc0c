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
                // Not being allowed to read Organizations is normal for a hub that is not the
                // management account: fall back quietly and do not ask again.
                debug!(account, error = %err, "account name not available from Organizations");
                if err.class.is_retryable() {
                    return shown.map_or_else(|| account.clone(), str::to_string);
                }
                ctx.names
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(account.clone(), None);
                None
            }
        },
    };
    name.unwrap_or_else(|| account.clone())
}
