//! Who the person at the command line is: the name the environment claims (`$USER`), sent to
//! the daemon as a claim beside the principal its credentials authenticate; and, for a run in
//! the foreground (no daemon, so no credentials), the operating-system account, which the
//! system did authenticate.

/// The login name the environment claims (`$USER`, else `$LOGNAME`), if any.
pub fn claimed_name() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.trim().is_empty())
}

/// The name of this process's operating-system account (`uid N` when it has no name).
pub fn account() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_named_whatever_the_environment_says() {
        let name = account();
        assert!(!name.is_empty());
        // The same account, however `$USER` is set in this process.
        assert_eq!(account(), name);
    }
}
