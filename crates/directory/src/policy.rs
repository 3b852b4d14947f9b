//! Rules a new password must pass before it is hashed and stored (`mailctl user add`,
//! `user passwd`, password changes through the directory).
//!
//! The checks are cheap and local: length, control characters, closeness to the address, an
//! embedded list of very common passwords, and trivial patterns (one repeated character or a
//! short repeated group, a run such as `123456`, `abcdef` or `qwerty`). Errors are meant for the
//! administrator and never include the password.

/// Very common passwords, one per line, lowercase.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Runs that are too predictable to be a password (checked forwards and backwards, and a
/// password matches when it lies entirely inside one of them).
const SEQUENCES: &[&str] = &[
    "01234567890",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "zaq1xsw2cde3vfr4bgt5nhy6mju7,ki8.lo9/;p0",
    "!@#$%^&*()_+",
    "`1234567890-=",
    "789456123",
    "147258369",
    "159357",
];

/// Why a new password is refused. The messages are written for the administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The password holds a control character (NUL, CR, LF, TAB, …).
    #[error(
        "the password contains a control character (such as NUL, CR, LF or TAB), which the \
         mail protocols and line-based input cannot carry"
    )]
    ControlCharacter,
    /// The password has fewer characters than required.
    #[error("the password is too short: {actual} characters, at least {min} required")]
    TooShort {
        /// Characters (not bytes) in the password.
        actual: usize,
        /// Characters required.
        min: usize,
    },
    /// The password equals the address, its local part or its domain.
    #[error("the password must not be the address, its local part or its domain")]
    SameAsAddress,
    /// The password contains the address's local part.
    #[error("the password must not contain the address's local part")]
    ContainsLocalPart,
    /// The password is on the list of very common passwords.
    #[error("the password is one of the most commonly used passwords")]
    Common,
    /// The password is one character, or a group of up to three characters, repeated.
    #[error("the password is a single character or a short group of characters repeated")]
    Repeated,
    /// The password is a run of consecutive digits, letters or keys.
    #[error("the password is a simple sequence of digits, letters or keyboard keys")]
    Sequence,
}

/// Checks a new password for `address` (`local@domain`) against the policy; `min_length`
/// counts characters, not bytes (at least 1 is always required).
///
/// # Errors
/// The first rule the password breaks, as a [`PolicyError`].
pub fn check_new_password(
    password: &str,
    address: &str,
    min_length: usize,
) -> Result<(), PolicyError> {
    if password.chars().any(char::is_control) {
        return Err(PolicyError::ControlCharacter);
    }
    let actual = password.chars().count();
    let min = min_length.max(1);
    if actual < min {
        return Err(PolicyError::TooShort { actual, min });
    }

    let lower = password.to_lowercase();
    let address = address.trim().to_lowercase();
    let (local, domain) = postern_mail_types::split(&address);
    if [address.as_str(), local, domain]
        .iter()
        .any(|part| !part.is_empty() && lower == *part)
    {
        return Err(PolicyError::SameAsAddress);
    }
    if local.chars().count() >= 4 && lower.contains(local) {
        return Err(PolicyError::ContainsLocalPart);
    }
    if is_common(&lower) {
        return Err(PolicyError::Common);
    }
    if is_repeated(&lower) {
        return Err(PolicyError::Repeated);
    }
    if is_sequence(&lower) {
        return Err(PolicyError::Sequence);
    }
    Ok(())
}

fn in_common_list(candidate: &str) -> bool {
    COMMON_PASSWORDS
        .lines()
        .any(|line| line.trim() == candidate)
}

/// On the list as it is, or once a short tail of digits and symbols is removed
/// (`dragon2024!` is `dragon`).
fn is_common(lower: &str) -> bool {
    if in_common_list(lower) {
        return true;
    }
    let base = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    let tail = lower.len() - base.len();
    base.chars().count() >= 4 && (1..=6).contains(&tail) && in_common_list(base)
}

/// One character, or a group of two or three, repeated over the whole password.
fn is_repeated(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    (1..=3).any(|period| {
        chars.len() >= period * 2
            && chars
                .iter()
                .zip(chars.iter().skip(period))
                .all(|(a, b)| a == b)
    })
}

/// The whole password lies inside one of [`SEQUENCES`], forwards or backwards.
fn is_sequence(lower: &str) -> bool {
    let reversed: String = lower.chars().rev().collect();
    SEQUENCES
        .iter()
        .any(|run| run.contains(lower) || run.contains(reversed.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "alice.smith@example.org";

    fn check(password: &str) -> Result<(), PolicyError> {
        check_new_password(password, ADDR, 8)
    }

    #[test]
    fn good_passwords_pass() {
        for pw in [
            "correct horse battery staple",
            "Vk7#pQ2z!rT9",
            "tangerine-otter-57-glacier",
            "mëtàl Ünïcödé 42",
            "Zr4nd0m$S4lt",
        ] {
            assert_eq!(check(pw), Ok(()), "{pw}");
        }
        assert_eq!(check_new_password("xq", "bob@example.org", 0), Ok(()));
    }

    #[test]
    fn control_characters_are_refused() {
        for pw in [
            "abc\0defghij",
            "abcdefgh\r",
            "abcdefgh\n",
            "abc\tdefghij",
            "abc\u{7f}defghij",
            "abc\u{85}defghij",
        ] {
            assert_eq!(check(pw), Err(PolicyError::ControlCharacter), "{pw:?}");
        }
    }

    #[test]
    fn length_counts_characters() {
        assert_eq!(
            check("Xk7#pQ2"),
            Err(PolicyError::TooShort { actual: 7, min: 8 })
        );
        // 7 characters but 14 bytes.
        assert_eq!(
            check("ÄÖÜäöüß"),
            Err(PolicyError::TooShort { actual: 7, min: 8 })
        );
        assert_eq!(check("ÄÖÜäöüßé"), Ok(()));
        // An empty password is always too short.
        assert_eq!(
            check_new_password("", ADDR, 0),
            Err(PolicyError::TooShort { actual: 0, min: 1 })
        );
    }

    #[test]
    fn address_parts_are_refused() {
        for pw in [
            "alice.smith@example.org",
            "ALICE.SMITH@EXAMPLE.ORG",
            "Alice.Smith",
            "example.org",
            "EXAMPLE.org",
        ] {
            assert_eq!(check(pw), Err(PolicyError::SameAsAddress), "{pw}");
        }
        // Short local part: equality is refused even below the containment threshold.
        assert_eq!(
            check_new_password("bob", "bob@ex.org", 1),
            Err(PolicyError::SameAsAddress)
        );
        assert_eq!(
            check_new_password("ex.org", "bob@ex.org", 1),
            Err(PolicyError::SameAsAddress)
        );
        // No '@': the whole address is the local part.
        assert_eq!(
            check_new_password("postmaster", "postmaster", 8),
            Err(PolicyError::SameAsAddress)
        );
    }

    #[test]
    fn local_part_inside_is_refused() {
        for pw in ["alice.smith2024", "My-Alice.Smith-pw", "xxALICE.SMITHxx"] {
            assert_eq!(check(pw), Err(PolicyError::ContainsLocalPart), "{pw}");
        }
        // Local parts shorter than 4 characters are only refused when equal.
        assert_eq!(
            check_new_password("bobsled-winter-42", "bob@example.org", 8),
            Ok(())
        );
        assert_eq!(
            check_new_password("xjohnx-winter-42", "john@example.org", 8),
            Err(PolicyError::ContainsLocalPart)
        );
    }

    #[test]
    fn common_passwords_are_refused() {
        for pw in [
            "password",
            "PASSWORD",
            "Password1",
            "iloveyou",
            "letmein123",
            "Football",
            "trustno1",
            "p@ssw0rd",
            "Dragon2024!",
            "monkey12",
            "sunshine",
            "Contraseña",
        ] {
            assert_eq!(check(pw), Err(PolicyError::Common), "{pw}");
        }
        // A list word inside a longer password is fine.
        assert_eq!(check("my dragon ate 7 kiwis"), Ok(()));
        // A long random-looking tail is not a "short tail".
        assert_eq!(check("monkey-8472919364"), Ok(()));
    }

    #[test]
    fn common_list_is_well_formed() {
        let lines: Vec<&str> = COMMON_PASSWORDS.lines().collect();
        assert!(lines.len() >= 300, "{} entries", lines.len());
        let mut seen = std::collections::HashSet::new();
        for line in &lines {
            assert!(!line.is_empty(), "empty line");
            assert_eq!(*line, line.trim(), "whitespace around {line:?}");
            assert_eq!(line.to_lowercase(), *line, "not lowercase: {line:?}");
            assert!(seen.insert(*line), "duplicate {line:?}");
        }
        for must in [
            "123456", "password", "qwerty", "letmein", "iloveyou", "dragon", "monkey",
        ] {
            assert!(seen.contains(must), "{must} missing");
        }
    }

    #[test]
    fn repeated_characters_are_refused() {
        for pw in [
            "zzzzzzzz",
            "ZZZZzzzzzz",
            "++++++++++",
            "éééééééé",
            "xyxyxyxy",
            "q7!q7!q7!q7!",
        ] {
            assert_eq!(check(pw), Err(PolicyError::Repeated), "{pw}");
        }
        assert_eq!(check("xyzwxyzwxyzw-2"), Ok(()));
    }

    #[test]
    fn sequences_are_refused() {
        for pw in [
            "1234567890",
            "0987654321",
            "23456789",
            "abcdefghij",
            "ABCDEFGHIJK",
            "zyxwvutsrq",
            "qwertyuiop",
            "poiuytrewq",
            "asdfghjkl",
            "qwertyuiopasdf",
            "qwertzuiop",
            "azertyuiop",
            "1qaz2wsx3edc",
            "!@#$%^&*()",
            "mnbvcxzlkj",
        ] {
            // Some are also on the common list; either refusal is right.
            let result = check(pw);
            assert!(
                matches!(result, Err(PolicyError::Sequence | PolicyError::Common)),
                "{pw}: {result:?}"
            );
        }
        for pw in [
            "23456789",
            "zyxwvutsrq",
            "mnbvcxzlkj",
            "hijklmnop",
            "qwertyuiopasdf",
        ] {
            assert_eq!(check(pw), Err(PolicyError::Sequence), "{pw}");
        }
        assert_eq!(check("13579bdfhj"), Ok(()));
    }

    #[test]
    fn messages_do_not_echo_the_password() {
        let secret = "zzzzzzzzzz";
        let Err(err) = check(secret) else {
            panic!("expected a refusal")
        };
        assert!(!err.to_string().contains(secret));
        assert!(!format!("{err:?}").contains(secret));
    }
}
