//! Mosquitto password files: parse the text, check a username and
//! password against it, and edit it for a `passwd` command.
//!
//! The format is Mosquitto's `password_file`: one `username:hash` per line,
//! the hash in one of the forms `hash.rs` reads (`$7$` PBKDF2-SHA512, `$6$`
//! salted SHA-512, `$argon2id$`). As in Mosquitto, blanks around the
//! username and the hash are ignored (so `\r` of CRLF files too), and the
//! username ends at the first `:`. Beyond Mosquitto, which skips bad lines
//! and keeps the first of duplicate users, every line that is not blank and
//! not a comment (first non-blank character `#`) must be a good entry, or
//! the whole parse fails naming that line: a broker reloading a file keeps
//! the old one instead of running with part of the new.
//!
//! Never here: reading the file, randomness (callers pass salts), clocks.
//! Invariants: every user line in `lines` has exactly one entry in `users`
//! pointing at it; `stand_in` mirrors the cost of the first user's hash.

mod hash;

use core::fmt;
use core::num::NonZeroU32;
use std::collections::HashMap;

pub use hash::{Cost, Hash, HashError, Scheme, DEFAULT_PBKDF2_ITERATIONS, SALT_LEN};

/// Longest username a line may hold, in bytes: an MQTT string's limit (and
/// `mosquitto_passwd`'s).
pub const MAX_USERNAME_LEN: usize = 65535;

/// A parsed password file, in file order, with comments and blank lines
/// kept so `to_text` can write it back.
#[derive(Clone, Debug)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// Username bytes to the index of its line.
    users: HashMap<Box<[u8]>, usize>,
    /// Checked in place of a hash for users not in the file.
    stand_in: Hash,
}

#[derive(Clone, Debug)]
enum Line {
    /// A blank or comment line, verbatim (without its line ending).
    Other(Box<str>),
    User {
        name: Box<str>,
        hash: Hash,
        /// The line as read, while the entry is unchanged; `to_text` writes
        /// it back as it was.
        text: Option<Box<str>>,
    },
}

/// The answer to a username and password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// The user is in the file and the password matches.
    Ok,
    /// Unknown user, wrong password or no password: deliberately one answer
    /// (CONNACK 0x86 in v5, 0x04 in v3).
    BadCredentials,
}

/// A password file that does not parse: the 1-based line and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: LineError,
}

/// What is wrong with one line of a password file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Not blank, not a comment, and no `:` between username and hash.
    NoColon,
    /// Nothing after the `:`.
    NoHash,
    /// The username is not one a file may hold.
    Username(UsernameError),
    /// The same username appeared earlier.
    Duplicate {
        /// 1-based line of the first appearance.
        first_line: usize,
    },
    /// The text after the `:` is not a hash this crate reads.
    Hash(HashError),
}

/// Why a username cannot be stored in a password file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsernameError {
    /// Empty (after blanks are trimmed, when reading).
    Empty,
    /// Longer than `MAX_USERNAME_LEN` bytes.
    TooLong,
    /// Holds `:`, which ends a username in the file.
    Colon,
    /// Holds a control character (`mosquitto_passwd` refuses them too).
    Control,
    /// Starts with `#` or a blank, or ends with a blank: it would read back
    /// as a comment or as a different name.
    Edge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::NoColon => f.write_str("no ':' between username and hash"),
            LineError::NoHash => f.write_str("no hash after ':'"),
            LineError::Username(e) => write!(f, "username: {e}"),
            LineError::Duplicate { first_line } => {
                write!(f, "user already defined on line {first_line}")
            }
            LineError::Hash(e) => write!(f, "hash: {e}"),
        }
    }
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsernameError::Empty => "empty",
            UsernameError::TooLong => "longer than 65535 bytes",
            UsernameError::Colon => "contains ':'",
            UsernameError::Control => "contains a control character",
            UsernameError::Edge => "starts with '#' or a blank, or ends with a blank",
        })
    }
}

impl std::error::Error for ParseError {}
impl std::error::Error for LineError {}
impl std::error::Error for UsernameError {}

impl PasswordFile {
    /// An empty file (what `passwd -c` starts from).
    #[must_use]
    pub fn new() -> PasswordFile {
        PasswordFile {
            lines: Vec::new(),
            users: HashMap::new(),
            stand_in: Hash::default_stand_in(),
        }
    }

    /// Parses a whole password file.
    ///
    /// # Errors
    /// The first line that is neither blank, a comment nor a good entry.
    pub fn parse(text: &str) -> Result<PasswordFile, ParseError> {
        parse_with(text, |part| {
            Hash::parse(part)
                .map(|hash| (hash, false))
                .map_err(LineError::Hash)
        })
    }

    /// Parses a file whose entries may hold plain-text passwords, as
    /// `mosquitto_passwd -U` upgrades, hashing each as `$7$` with
    /// `iterations` and a salt from `salt_source`. Returns the file and how
    /// many lines were hashed.
    ///
    /// Unlike `mosquitto_passwd -U`, which hashes every line again (so
    /// running it twice spoils a file), an entry that already reads as a
    /// hash is kept; and the plain password is all of the text after the
    /// first `:` (trimmed of blanks), where Mosquitto stops at a second `:`.
    ///
    /// # Errors
    /// A line without `:`, with a bad username, or starting `$6$`, `$7$` or
    /// `$argon2id$` without being a good hash (a damaged hash, not a
    /// password).
    pub fn upgrade_plain(
        text: &str,
        iterations: NonZeroU32,
        mut salt_source: impl FnMut() -> [u8; SALT_LEN],
    ) -> Result<(PasswordFile, usize), ParseError> {
        let mut upgraded = 0;
        let file = parse_with(text, |part| {
            if ["$6$", "$7$", "$argon2id$"]
                .iter()
                .any(|scheme| part.starts_with(scheme))
            {
                return Hash::parse(part)
                    .map(|hash| (hash, false))
                    .map_err(LineError::Hash);
            }
            upgraded += 1;
            Ok((
                Hash::pbkdf2_sha512(part.as_bytes(), salt_source(), iterations),
                true,
            ))
        })?;
        Ok((file, upgraded))
    }

    /// Checks a CONNECT's username and password. `None` (a CONNECT without
    /// a password) is always `BadCredentials`.
    ///
    /// Slow by design (the whole hash runs here): call it off the shard
    /// threads. Whether the user exists does not show in the answer nor,
    /// much, in the time: an unknown user is checked against a stand-in
    /// hash with the cost of the file's first entry. Entries of different
    /// costs do differ in time from each other.
    pub fn verify(&self, user: &[u8], password: Option<&[u8]>) -> Verdict {
        let (hash, known) = match self.entry(user) {
            Some(hash) => (hash, true),
            None => (&self.stand_in, false),
        };
        let matched = hash.verify(password.unwrap_or_default());
        if known && matched && password.is_some() {
            Verdict::Ok
        } else {
            Verdict::BadCredentials
        }
    }

    /// The stored hash of `user`, for a caller that runs `Hash::verify`
    /// itself (on a worker thread, with a clone of the hash); pair a miss
    /// with `stand_in` so unknown users cost the same.
    #[must_use]
    pub fn entry(&self, user: &[u8]) -> Option<&Hash> {
        match self.lines.get(*self.users.get(user)?) {
            Some(Line::User { hash, .. }) => Some(hash),
            _ => {
                debug_assert!(false, "users index points at a user line");
                None
            }
        }
    }

    /// The hash to check instead when the user is not in the file: same
    /// scheme and cost as the first entry, matched by no password in
    /// practice. Its result must be ignored.
    #[must_use]
    pub fn stand_in(&self) -> &Hash {
        &self.stand_in
    }

    /// Usernames in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::User { name, .. } => Some(&**name),
            Line::Other(_) => None,
        })
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// No users (there may still be comments).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds `user` at the end, or replaces its hash in place.
    ///
    /// # Errors
    /// A username that the file could not read back as itself.
    pub fn set(&mut self, user: &str, hash: Hash) -> Result<(), UsernameError> {
        check_new_username(user)?;
        if let Some(&index) = self.users.get(user.as_bytes()) {
            if let Some(Line::User {
                hash: old, text, ..
            }) = self.lines.get_mut(index)
            {
                *old = hash;
                *text = None;
            }
        } else {
            self.users.insert(user.as_bytes().into(), self.lines.len());
            self.lines.push(Line::User {
                name: user.into(),
                hash,
                text: None,
            });
        }
        self.refresh_stand_in();
        Ok(())
    }

    /// Removes `user`'s line; `false` when it was not there.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(index) = self.users.remove(user.as_bytes()) else {
            return false;
        };
        self.lines.remove(index);
        for later in self.users.values_mut() {
            if *later > index {
                *later -= 1;
            }
        }
        self.refresh_stand_in();
        true
    }

    /// The file as text: untouched lines as they were read, changed and new
    /// entries as `user:hash`; every line ends with `\n`.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text)
                | Line::User {
                    text: Some(text), ..
                } => out.push_str(text),
                Line::User {
                    name,
                    hash,
                    text: None,
                } => {
                    out.push_str(name);
                    out.push(':');
                    out.push_str(&hash.to_line_part());
                }
            }
            out.push('\n');
        }
        out
    }

    fn refresh_stand_in(&mut self) {
        let first = self.lines.iter().find_map(|line| match line {
            Line::User { hash, .. } => Some(hash),
            Line::Other(_) => None,
        });
        self.stand_in = first.map_or_else(Hash::default_stand_in, Hash::stand_in);
    }
}

impl Default for PasswordFile {
    fn default() -> PasswordFile {
        PasswordFile::new()
    }
}

/// The line loop shared by `parse` and `upgrade_plain`: `entry` turns the
/// trimmed text after `:` into a hash, and says whether it changed it (then
/// the line is written anew by `to_text`).
fn parse_with(
    text: &str,
    mut entry: impl FnMut(&str) -> Result<(Hash, bool), LineError>,
) -> Result<PasswordFile, ParseError> {
    let mut file = PasswordFile::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let fail = |why| ParseError { line, why };
        // `lines` strips "\n" and "\r\n"; a lone trailing '\r' goes too.
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let content = raw.trim_matches(is_c_space);
        if content.is_empty() || content.starts_with('#') {
            file.lines.push(Line::Other(raw.into()));
            continue;
        }
        let (name, part) = content
            .split_once(':')
            .ok_or_else(|| fail(LineError::NoColon))?;
        let name = name.trim_matches(is_c_space);
        let part = part.trim_matches(is_c_space);
        if name.is_empty() {
            return Err(fail(LineError::Username(UsernameError::Empty)));
        }
        if name.len() > MAX_USERNAME_LEN {
            return Err(fail(LineError::Username(UsernameError::TooLong)));
        }
        if part.is_empty() {
            return Err(fail(LineError::NoHash));
        }
        // Every text line so far is one entry of `file.lines`, so an index
        // there is a line number less one.
        if let Some(&first) = file.users.get(name.as_bytes()) {
            return Err(fail(LineError::Duplicate {
                first_line: first + 1,
            }));
        }
        let (hash, changed) = entry(part).map_err(fail)?;
        file.users.insert(name.as_bytes().into(), file.lines.len());
        file.lines.push(Line::User {
            name: name.into(),
            hash,
            text: (!changed).then(|| raw.into()),
        });
    }
    file.refresh_stand_in();
    Ok(file)
}

/// C's `isspace`, which Mosquitto's `trimblanks` uses.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A username `set` may write: one `parse` reads back as the same name.
fn check_new_username(user: &str) -> Result<(), UsernameError> {
    if user.is_empty() {
        return Err(UsernameError::Empty);
    }
    if user.len() > MAX_USERNAME_LEN {
        return Err(UsernameError::TooLong);
    }
    if user.contains(':') {
        return Err(UsernameError::Colon);
    }
    if user.chars().any(char::is_control) {
        return Err(UsernameError::Control);
    }
    if user.starts_with('#') || user.starts_with(is_c_space) || user.ends_with(is_c_space) {
        return Err(UsernameError::Edge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by mosquitto_passwd 2.0.11 on this machine (see hash.rs):
    // `mosquitto_passwd -c -b pw.txt "alice smith" 's3cret:pw'` and
    // `mosquitto_passwd -H sha512 -b pw.txt bob hunter2`.
    const ALICE: &str = "alice smith:$7$101$7aoUxC97msd4JXd9$+CbyhXPaNWCCycIx3dhHD0e4KcQSMRdX+YtNYRgHohEX4JsiKH632F/7oHcC7Pr5bu2Q7LpDFAYKGuC8Z1XwWw==";
    const BOB: &str = "bob:$6$kinKeUH44zjejA42$YU5J6J0a8SUATFHMEtN8DZJ/kj9yCJ4VL5UvkJH8DECQA8WKZX/ahuu43a57LJTEgozY/qSiUPAaTphzzSZwFA==";

    fn salts() -> impl FnMut() -> [u8; SALT_LEN] {
        let mut next = 0u8;
        move || {
            next += 1;
            [next; SALT_LEN]
        }
    }

    fn one() -> NonZeroU32 {
        NonZeroU32::MIN
    }

    fn parse(text: &str) -> PasswordFile {
        match PasswordFile::parse(text) {
            Ok(file) => file,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn verifies_right_and_wrong_passwords() {
        let file = parse(&format!("{ALICE}\n{BOB}\n"));
        assert_eq!(file.len(), 2);
        assert_eq!(file.verify(b"alice smith", Some(b"s3cret:pw")), Verdict::Ok);
        assert_eq!(file.verify(b"bob", Some(b"hunter2")), Verdict::Ok);
        assert_eq!(
            file.verify(b"alice smith", Some(b"hunter2")),
            Verdict::BadCredentials
        );
        assert_eq!(file.verify(b"bob", Some(b"")), Verdict::BadCredentials);
        assert_eq!(file.verify(b"bob", None), Verdict::BadCredentials);
        assert_eq!(
            file.verify(b"Bob", Some(b"hunter2")),
            Verdict::BadCredentials
        );
        assert_eq!(
            file.verify(b"carol", Some(b"hunter2")),
            Verdict::BadCredentials
        );
        assert_eq!(file.verify(b"", Some(b"")), Verdict::BadCredentials);
        assert_eq!(
            file.verify(b"\xff\xfe", Some(b"hunter2")),
            Verdict::BadCredentials
        );
    }

    #[test]
    fn an_empty_password_still_needs_a_password_field() {
        let mut file = PasswordFile::new();
        file.set("e", Hash::pbkdf2_sha512(b"", [7; SALT_LEN], one()))
            .unwrap();
        assert_eq!(file.verify(b"e", Some(b"")), Verdict::Ok);
        assert_eq!(file.verify(b"e", None), Verdict::BadCredentials);
    }

    #[test]
    fn unknown_users_cost_like_the_first_entry() {
        let file = parse(&format!("# users\n{BOB}\n{ALICE}\n"));
        assert_eq!(file.stand_in().cost_hint(), Cost::Sha512);
        assert_eq!(file.entry(b"nobody"), None);
        let file = parse(&format!("{ALICE}\n{BOB}\n"));
        assert_eq!(
            file.stand_in().cost_hint(),
            Cost::Pbkdf2Sha512 { iterations: 101 }
        );
        assert_eq!(
            PasswordFile::new().stand_in().cost_hint(),
            Cost::Pbkdf2Sha512 {
                iterations: DEFAULT_PBKDF2_ITERATIONS.get()
            }
        );
    }

    #[test]
    fn comments_blank_lines_blanks_and_crlf() {
        let text = format!(
            "# a comment\r\n\r\n   \r\n  # indented comment: with a colon\r\n  {ALICE}  \r\n\t{BOB}\r\n\r\n"
        );
        let file = parse(&text);
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice smith", "bob"]);
        assert_eq!(file.verify(b"alice smith", Some(b"s3cret:pw")), Verdict::Ok);
        assert_eq!(file.verify(b"bob", Some(b"hunter2")), Verdict::Ok);
        // Written back line for line, with '\n' endings.
        assert_eq!(file.to_text(), text.replace("\r\n", "\n"));
        // No final newline, and a file of nothing.
        assert_eq!(parse(BOB).len(), 1);
        assert!(parse("").is_empty());
        assert_eq!(parse("").to_text(), "");
    }

    #[test]
    fn username_is_trimmed_like_mosquitto() {
        let file = parse(&format!(" {ALICE}"));
        assert!(file.entry(b"alice smith").is_some());
        assert!(file.entry(b" alice smith").is_none());
        let hash_part = ALICE.split_once(':').unwrap().1;
        let file = parse(&format!("  x y  :  {hash_part}  "));
        assert!(file.entry(b"x y").is_some());
    }

    #[test]
    fn parse_errors_name_the_line() {
        let bad_hash = "carol:$7$101$AQIDBAUGBwgJCgsM";
        let cases: Vec<(String, ParseError)> = vec![
            (
                format!("# c\n{ALICE}\njust text\n"),
                ParseError {
                    line: 3,
                    why: LineError::NoColon,
                },
            ),
            (
                format!("{ALICE}\n{bad_hash}\n{BOB}"),
                ParseError {
                    line: 2,
                    why: LineError::Hash(HashError::Fields {
                        expected: 3,
                        found: 2,
                    }),
                },
            ),
            (
                format!("\r\n{BOB}\r\ncarol:plain-text\r\n"),
                ParseError {
                    line: 3,
                    why: LineError::Hash(HashError::UnknownScheme),
                },
            ),
            (
                format!("{BOB}\n\n {BOB}\n"),
                ParseError {
                    line: 3,
                    why: LineError::Duplicate { first_line: 1 },
                },
            ),
            (
                "  :$6$x$y".to_owned(),
                ParseError {
                    line: 1,
                    why: LineError::Username(UsernameError::Empty),
                },
            ),
            (
                "\n\nbob:  \n".to_owned(),
                ParseError {
                    line: 3,
                    why: LineError::NoHash,
                },
            ),
            (
                format!("{}:$6$x$y", "u".repeat(MAX_USERNAME_LEN + 1)),
                ParseError {
                    line: 1,
                    why: LineError::Username(UsernameError::TooLong),
                },
            ),
        ];
        for (text, want) in cases {
            let got = PasswordFile::parse(&text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
        }
        assert_eq!(
            PasswordFile::parse("x\n").unwrap_err().to_string(),
            "line 1: no ':' between username and hash"
        );
        assert_eq!(
            PasswordFile::parse(&format!("{BOB}\n{bad_hash}"))
                .unwrap_err()
                .to_string(),
            "line 2: hash: expected 3 non-empty '$'-separated fields after the scheme, found 2"
        );
    }

    #[test]
    fn set_remove_and_to_text_keep_the_rest() {
        let text = format!("# managed by hand\n{ALICE}\n\n# old\n{BOB}\n");
        let mut file = parse(&text);
        assert_eq!(file.to_text(), text);

        let carol = Hash::pbkdf2_sha512(b"carol pw", [3; SALT_LEN], one());
        file.set("carol", carol.clone()).unwrap();
        let bob = Hash::pbkdf2_sha512(b"new bob", [4; SALT_LEN], one());
        file.set("bob", bob.clone()).unwrap();
        assert_eq!(
            file.to_text(),
            format!(
                "# managed by hand\n{ALICE}\n\n# old\nbob:{}\ncarol:{}\n",
                bob.to_line_part(),
                carol.to_line_part()
            )
        );
        assert_eq!(file.verify(b"bob", Some(b"new bob")), Verdict::Ok);
        assert_eq!(
            file.verify(b"bob", Some(b"hunter2")),
            Verdict::BadCredentials
        );

        assert!(file.remove("alice smith"));
        assert!(!file.remove("alice smith"));
        assert_eq!(
            file.verify(b"alice smith", Some(b"s3cret:pw")),
            Verdict::BadCredentials
        );
        // Indices after the removed line still point at the right users.
        assert_eq!(file.entry(b"carol"), Some(&carol));
        assert_eq!(file.entry(b"bob"), Some(&bob));
        assert_eq!(file.stand_in().cost_hint(), bob.cost_hint());

        let again = parse(&file.to_text());
        assert_eq!(again.to_text(), file.to_text());
        assert_eq!(again.verify(b"carol", Some(b"carol pw")), Verdict::Ok);
        assert_eq!(again.users().collect::<Vec<_>>(), ["bob", "carol"]);
    }

    #[test]
    fn set_refuses_names_that_would_not_read_back() {
        let mut file = PasswordFile::new();
        let hash = Hash::salted_sha512(b"x", [0; SALT_LEN]);
        for (name, want) in [
            ("", UsernameError::Empty),
            ("a:b", UsernameError::Colon),
            ("a\nb", UsernameError::Control),
            ("a\x7fb", UsernameError::Control),
            ("#root", UsernameError::Edge),
            (" a", UsernameError::Edge),
            ("a ", UsernameError::Edge),
        ] {
            assert_eq!(file.set(name, hash.clone()), Err(want), "{name:?}");
        }
        assert_eq!(
            file.set(&"u".repeat(MAX_USERNAME_LEN + 1), hash.clone()),
            Err(UsernameError::TooLong)
        );
        assert!(file.is_empty());
        file.set("a b#c", hash).unwrap();
        assert_eq!(
            parse(&file.to_text()).users().collect::<Vec<_>>(),
            ["a b#c"]
        );
    }

    #[test]
    fn upgrade_plain_hashes_plain_lines_only() {
        let text = format!("# plain\nalice: open sesame \r\n{BOB}\ndave:pa:ss\n");
        let (file, upgraded) = PasswordFile::upgrade_plain(&text, one(), salts()).unwrap();
        assert_eq!(upgraded, 2);
        assert_eq!(file.verify(b"alice", Some(b"open sesame")), Verdict::Ok);
        assert_eq!(file.verify(b"bob", Some(b"hunter2")), Verdict::Ok);
        assert_eq!(file.verify(b"dave", Some(b"pa:ss")), Verdict::Ok);
        let alice = Hash::pbkdf2_sha512(b"open sesame", [1; SALT_LEN], one());
        let dave = Hash::pbkdf2_sha512(b"pa:ss", [2; SALT_LEN], one());
        let out = file.to_text();
        assert_eq!(
            out,
            format!(
                "# plain\nalice:{}\n{BOB}\ndave:{}\n",
                alice.to_line_part(),
                dave.to_line_part()
            )
        );
        // Running it again changes nothing.
        let (again, upgraded) = PasswordFile::upgrade_plain(&out, one(), salts()).unwrap();
        assert_eq!(upgraded, 0);
        assert_eq!(again.to_text(), out);
        // And the result is a file the strict parser reads.
        assert_eq!(parse(&out).len(), 3);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(([ #a-z:$0-9A-Z+/=\r\t]{0,40})\n?){0,6}") {
            let _ = PasswordFile::parse(&text);
            let _ = PasswordFile::upgrade_plain(&text, one(), salts());
        }

        // Edits against a map as the model: after each step the file, and
        // the file written out and read back, hold exactly the model's users.
        #[test]
        fn edits_match_a_map(steps in proptest::collection::vec(
            (0u8..6, proptest::option::of("[a-z]{0,3}")), 0..24))
        {
            let mut file = parse("# kept\n");
            let mut model = std::collections::BTreeMap::new();
            for (user, password) in steps {
                let name = format!("user {user}");
                match password {
                    Some(password) => {
                        let hash = Hash::salted_sha512(password.as_bytes(), [user; SALT_LEN]);
                        file.set(&name, hash).unwrap();
                        model.insert(name, password);
                    }
                    None => {
                        proptest::prop_assert_eq!(file.remove(&name), model.remove(&name).is_some());
                    }
                }
                let text = file.to_text();
                proptest::prop_assert!(text.starts_with("# kept\n"));
                let again = parse(&text);
                for checked in [&file, &again] {
                    proptest::prop_assert_eq!(checked.len(), model.len());
                    for (name, password) in &model {
                        proptest::prop_assert_eq!(
                            checked.verify(name.as_bytes(), Some(password.as_bytes())),
                            Verdict::Ok
                        );
                        proptest::prop_assert_eq!(
                            checked.verify(name.as_bytes(), Some(b"wrong")),
                            Verdict::BadCredentials
                        );
                    }
                }
                proptest::prop_assert_eq!(again.to_text(), text);
            }
        }
    }

    #[test]
    fn upgrade_plain_refuses_damaged_hashes() {
        let err =
            PasswordFile::upgrade_plain("a:pw\nb:$7$101$AAAA$BBBB\n", one(), salts()).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(matches!(err.why, LineError::Hash(_)), "{err}");
        let err = PasswordFile::upgrade_plain("a:pw\nnope\n", one(), salts()).unwrap_err();
        assert_eq!(
            err,
            ParseError {
                line: 2,
                why: LineError::NoColon
            }
        );
    }
}
