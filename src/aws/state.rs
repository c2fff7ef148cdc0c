//! The states AWS reports, as enums. Each keeps a value it does not know as `Other`, so a new
//! state AWS adds is shown as AWS spelled it instead of failing a reconcile, and each displays
//! exactly as AWS spells it, because the CRD status carries these strings.

/// Defines a state enum with its AWS spellings, `From<&str>`, `as_str` and `Display`.
macro_rules! aws_state {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know (empty when AWS sent none), as AWS spelled it.
            Other(String),
        }

        impl $name {
            /// The value as AWS spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::Other(String::new())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_state! {
    /// A StackSet operation's `Status` (DescribeStackSetOperation).
    OperationStatus {
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Stopping = "STOPPING",
        Stopped = "STOPPED",
        /// Waiting behind a conflicting operation (managed execution).
        Queued = "QUEUED",
    }
}

impl OperationStatus {
    /// Whether the operation has finished, one way or another.
    pub fn finished(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }
}

aws_state! {
    /// A StackSet's `Status`: a deleted one is still described by ID for a while.
    StackSetStatus {
        Active = "ACTIVE",
        Deleted = "DELETED",
    }
}

aws_state! {
    /// A stack instance's `Status`: whether its stack matches the StackSet.
    InstanceStatus {
        Current = "CURRENT",
        Outdated = "OUTDATED",
        /// A failed delete: later updates skip it; only DeleteStackInstances with
        /// RetainStacks removes it.
        Inoperable = "INOPERABLE",
    }
}

aws_state! {
    /// A stack instance's `DetailedStatus`: how its last operation went.
    DetailedStatus {
        Pending = "PENDING",
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        /// Left out when the operation's failure tolerance was exceeded.
        Cancelled = "CANCELLED",
        Inoperable = "INOPERABLE",
        SkippedSuspendedAccount = "SKIPPED_SUSPENDED_ACCOUNT",
        FailedImport = "FAILED_IMPORT",
    }
}

aws_state! {
    /// A stack instance's `DriftStatus`: what the last DetectStackSetDrift found.
    DriftStatus {
        /// A resource of the stack differs from the template (changed by hand).
        Drifted = "DRIFTED",
        InSync = "IN_SYNC",
        /// The check could not compare (nothing current deployed, or it failed).
        Unknown = "UNKNOWN",
        NotChecked = "NOT_CHECKED",
    }
}

aws_state! {
    /// A CreateAccount request's `State`.
    CreateAccountState {
        InProgress = "IN_PROGRESS",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
    }
}

aws_state! {
    /// An account's `State` in Organizations (or the older `Status`).
    AccountState {
        Active = "ACTIVE",
        PendingActivation = "PENDING_ACTIVATION",
        /// Closed by CloseAccount; becomes SUSPENDED, reinstatable for 90 days.
        PendingClosure = "PENDING_CLOSURE",
        Suspended = "SUSPENDED",
        Closed = "CLOSED",
    }
}

impl AccountState {
    /// Whether the account is closed or on its way there: closing it again is done.
    pub fn closing_or_closed(&self) -> bool {
        matches!(self, Self::PendingClosure | Self::Suspended | Self::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATION_STATUSES: [&str; 6] = [
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "STOPPING",
        "STOPPED",
        "QUEUED",
    ];

    #[test]
    fn states_read_and_print_as_aws_spells_them() {
        for text in OPERATION_STATUSES {
            let status = OperationStatus::from(text);
            assert!(!matches!(status, OperationStatus::Other(_)), "{text}");
            assert_eq!(status.to_string(), text);
        }
        assert_eq!(
            DetailedStatus::from("SKIPPED_SUSPENDED_ACCOUNT"),
            DetailedStatus::SkippedSuspendedAccount
        );
        assert_eq!(
            AccountState::from("PENDING_CLOSURE"),
            AccountState::PendingClosure
        );
        assert_eq!(
            CreateAccountState::from("IN_PROGRESS"),
            CreateAccountState::InProgress
        );
        assert_eq!(InstanceStatus::from("INOPERABLE").as_str(), "INOPERABLE");
    }

    #[test]
    fn unknown_states_keep_their_spelling() {
        let new = InstanceStatus::from("RETIRED");
        assert_eq!(new, InstanceStatus::Other("RETIRED".into()));
        assert_eq!(new.to_string(), "RETIRED");
        assert_eq!(AccountState::default().as_str(), "");
    }

    #[test]
    fn finished_operations_and_closing_accounts() {
        let finished: Vec<&str> = OPERATION_STATUSES
            .into_iter()
            .filter(|s| OperationStatus::from(*s).finished())
            .collect();
        assert_eq!(finished, ["SUCCEEDED", "FAILED", "STOPPED"]);
        let closing: Vec<&str> = [
            "ACTIVE",
            "PENDING_ACTIVATION",
            "PENDING_CLOSURE",
            "SUSPENDED",
            "CLOSED",
        ]
        .into_iter()
        .filter(|s| AccountState::from(*s).closing_or_closed())
        .collect();
        assert_eq!(closing, ["PENDING_CLOSURE", "SUSPENDED", "CLOSED"]);
    }
}
