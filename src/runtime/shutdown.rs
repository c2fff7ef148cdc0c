//! The signals that stop the operator gracefully: SIGTERM (Kubernetes) and SIGINT (a terminal).

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn signal() {
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
