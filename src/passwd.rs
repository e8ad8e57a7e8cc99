//! `ringmq passwd`: create and edit Mosquitto password files, as
//! `mosquitto_passwd` 2.0 does (`-c`, `-b`, `-D`, `-U`, `-I`, `-H`).
//!
//! This owns the command's flags, the password prompt (the terminal's echo
//! off and back on, even when a signal ends the process mid-prompt), salts
//! from the OS and the atomic rewrite of the file. Parsing, hashing and
//! editing the file text are `ringmq_auth::password`'s; nothing here knows
//! the line format.
//!
//! Invariants: the file on disk is either the old one or the whole new one
//! (a temporary file in the same directory, synced, then renamed over it);
//! nothing is written when any step before the rename fails; a file that
//! does not parse is never rewritten.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, BufRead as _, Write as _};
use std::num::NonZeroU32;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use ringmq_auth::password::{
    Hash, ParseError, PasswordFile, UsernameError, DEFAULT_PBKDF2_ITERATIONS, SALT_LEN,
};

/// Longest password accepted, in bytes: an MQTT password's limit (and
/// `mosquitto_passwd`'s).
const MAX_PASSWORD_LEN: usize = 65535;

/// Mode of a newly created password file: it holds hashes, readable by the
/// owner only.
const NEW_FILE_MODE: u32 = 0o600;

const USAGE: &str = "\
usage: ringmq passwd [-H sha512-pbkdf2|sha512] [-I ITERATIONS] [-c | -D] FILE USER
       ringmq passwd [-H sha512-pbkdf2|sha512] [-I ITERATIONS] [-c] -b FILE USER PASSWORD
       ringmq passwd [-I ITERATIONS] -U FILE";

/// Runs `ringmq passwd` with the arguments after `passwd`: 0 on success,
/// 1 when the command failed, 2 for a usage error.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print_help();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringmq passwd: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq passwd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn print_help() {
    println!(
        "\
ringmq passwd: create and edit a Mosquitto password file (as mosquitto_passwd 2.0)

{USAGE}

  -c             create FILE, overwriting it if it exists
  -b             batch mode: take PASSWORD from the command line (it shows in
                 the process list and shell history; prefer piping it to stdin)
  -D             delete USER from FILE
  -U             upgrade FILE of plain-text user:password lines to hashes
                 (lines that already hold a hash are kept)
  -I ITERATIONS  PBKDF2 iterations for new hashes (default {default}, what
                 mosquitto_passwd 2.0 writes). Mosquitto 2.0 reads any count,
                 as ringmq does; higher is stronger against offline guessing
                 and costs more per check at CONNECT
  -H sha512-pbkdf2|sha512
                 hash to write: $7$ PBKDF2-SHA512 (the default), or $6$
                 salted SHA-512 for Mosquitto 1.x (weak; not with -U)
  -h, --help     print this help

Without -b the password is asked for twice on the terminal, without echo.
When stdin is not a terminal one line is read from it instead. The file is
replaced atomically; a new file gets mode 0600, an existing one keeps its
mode and owner.",
        default = DEFAULT_PBKDF2_ITERATIONS
    );
}

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    action: Action,
    file: PathBuf,
    iterations: NonZeroU32,
    scheme: HashScheme,
}

#[derive(Debug)]
enum Action {
    /// Add or update `user`; `create` starts from an empty file.
    Set {
        create: bool,
        user: String,
        /// `-b`'s PASSWORD; `None` means prompt (or read stdin).
        password: Option<OsString>,
    },
    Delete {
        user: String,
    },
    Upgrade,
}

/// The hash `Set` writes (`-H`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HashScheme {
    Pbkdf2Sha512,
    Sha512,
}

enum Parsed {
    Run(Options),
    Help,
}

/// Why `ringmq passwd` failed.
#[derive(Debug)]
enum Error {
    /// The command line is wrong (exit status 2).
    Usage(String),
    /// USER cannot be stored in a password file.
    Username(UsernameError),
    /// USER is not valid UTF-8 (MQTT usernames are UTF-8 strings).
    UsernameNotUtf8,
    /// `-D` of a user the file does not hold.
    UnknownUser { user: String, file: PathBuf },
    /// The two passwords typed differ.
    Mismatch,
    /// An empty password was typed or piped.
    EmptyPassword,
    /// End of input before a password.
    NoPassword,
    /// The password is longer than `MAX_PASSWORD_LEN` bytes.
    PasswordTooLong,
    /// Reading or writing a file, or the terminal, failed.
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// FILE does not exist and `-c` was not given.
    Missing { file: PathBuf },
    /// FILE is not UTF-8 from this line on.
    NotUtf8 { file: PathBuf, line: usize },
    /// FILE does not parse.
    Parse { file: PathBuf, error: ParseError },
    /// The OS gave no random bytes for a salt.
    Random(io::Error),
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(why) => write!(f, "{why} (see ringmq passwd --help)"),
            Error::Username(e) => write!(f, "username {e}"),
            Error::UsernameNotUtf8 => f.write_str("username is not valid UTF-8"),
            Error::UnknownUser { user, file } => {
                write!(f, "user {user:?} is not in {}", file.display())
            }
            Error::Mismatch => f.write_str("passwords do not match"),
            Error::EmptyPassword => f.write_str("empty password"),
            Error::NoPassword => f.write_str("no password: end of input"),
            Error::PasswordTooLong => {
                write!(f, "password longer than {MAX_PASSWORD_LEN} bytes")
            }
            Error::Io { what, path, error } => {
                write!(f, "cannot {what} {}: {error}", path.display())
            }
            Error::Missing { file } => {
                write!(f, "{} does not exist (use -c to create it)", file.display())
            }
            Error::NotUtf8 { file, line } => {
                write!(f, "{}: line {line}: not valid UTF-8", file.display())
            }
            Error::Parse { file, error } => write!(f, "{}: {error}", file.display()),
            Error::Random(e) => write!(f, "cannot get random bytes for a salt: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn usage(why: impl Into<String>) -> Error {
    Error::Usage(why.into())
}

impl Options {
    /// Reads mosquitto_passwd's flags: single letters, separate or grouped
    /// (`-cb`), all before the first operand; `--` ends them.
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Error> {
        let mut args = args.into_iter().peekable();
        let (mut create, mut batch, mut delete, mut upgrade) = (false, false, false, false);
        let mut iterations = DEFAULT_PBKDF2_ITERATIONS;
        let mut scheme = None;
        while let Some(arg) = args.next_if(|a| a.as_bytes().starts_with(b"-") && a.len() > 1) {
            if arg == "--" {
                break;
            }
            if arg == "--help" {
                return Ok(Parsed::Help);
            }
            let Some(letters) = arg.to_str().and_then(|a| a.strip_prefix('-')) else {
                return Err(usage(format!("unknown option {}", arg.to_string_lossy())));
            };
            for (at, letter) in letters.char_indices() {
                match letter {
                    'c' => create = true,
                    'b' => batch = true,
                    'D' => delete = true,
                    'U' => upgrade = true,
                    'h' => return Ok(Parsed::Help),
                    'I' | 'H' => {
                        // The value is the rest of this argument or the next one.
                        let rest = &letters[at + 1..];
                        let value = if rest.is_empty() {
                            args.next()
                                .ok_or_else(|| usage(format!("-{letter} needs a value")))?
                        } else {
                            OsString::from(rest)
                        };
                        let value = value.to_string_lossy();
                        if letter == 'I' {
                            iterations = value.parse::<NonZeroU32>().map_err(|_| {
                                usage(format!(
                                    "-I {value}: iterations must be a number from 1 to {}",
                                    u32::MAX
                                ))
                            })?;
                        } else {
                            scheme = Some(match &*value {
                                "sha512-pbkdf2" => HashScheme::Pbkdf2Sha512,
                                "sha512" => HashScheme::Sha512,
                                other => {
                                    return Err(usage(format!(
                                        "-H {other}: unknown hash (sha512-pbkdf2 or sha512)"
                                    )))
                                }
                            });
                        }
                        break;
                    }
                    other => return Err(usage(format!("unknown option -{other}"))),
                }
            }
        }
        let operands: Vec<OsString> = args.collect();

        // mosquitto_passwd's refusals, in its order, and -b with -U.
        for (a, b, both) in [
            ("-c", "-D", create && delete),
            ("-c", "-U", create && upgrade),
            ("-D", "-U", delete && upgrade),
            ("-b", "-D", batch && delete),
            ("-b", "-U", batch && upgrade),
        ] {
            if both {
                return Err(usage(format!("{a} and {b} cannot be used together")));
            }
        }
        if upgrade && scheme == Some(HashScheme::Sha512) {
            return Err(usage(
                "-U always writes sha512-pbkdf2; -H sha512 cannot be used with it",
            ));
        }
        let expected = match (upgrade, batch) {
            (true, _) => "FILE",
            (false, true) => "FILE USER PASSWORD",
            (false, false) => "FILE USER",
        };
        let count = expected.split(' ').count();
        if operands.len() != count {
            return Err(usage(format!(
                "expected {expected}, got {} operand{}",
                operands.len(),
                if operands.len() == 1 { "" } else { "s" }
            )));
        }
        let mut operands = operands.into_iter();
        let file = PathBuf::from(operands.next().unwrap_or_default());
        if file.as_os_str().is_empty() {
            return Err(usage("FILE is empty"));
        }
        let mut user = || {
            operands
                .next()
                .unwrap_or_default()
                .into_string()
                .map_err(|_| Error::UsernameNotUtf8)
        };
        let action = if upgrade {
            Action::Upgrade
        } else if delete {
            Action::Delete { user: user()? }
        } else {
            Action::Set {
                create,
                user: user()?,
                password: operands.next(),
            }
        };
        Ok(Parsed::Run(Options {
            action,
            file,
            iterations,
            scheme: scheme.unwrap_or(HashScheme::Pbkdf2Sha512),
        }))
    }
}

fn run(options: &Options) -> Result<(), Error> {
    let path = &options.file;
    let file = match &options.action {
        Action::Set {
            create,
            user,
            password,
        } => {
            // Refuse a bad username before asking for a password: a trial
            // entry with a cheap hash shows whether the file could hold it.
            PasswordFile::new()
                .set(user, Hash::salted_sha512(b"", [0; SALT_LEN]))
                .map_err(Error::Username)?;
            let mut file = if *create {
                PasswordFile::new()
            } else {
                PasswordFile::parse(&read_text(path)?).map_err(|error| Error::Parse {
                    file: path.clone(),
                    error,
                })?
            };
            let password = match password {
                Some(p) => p.as_bytes().to_vec(),
                None => read_password()?,
            };
            if password.len() > MAX_PASSWORD_LEN {
                return Err(Error::PasswordTooLong);
            }
            let salt = random_salt()?;
            let hash = match options.scheme {
                HashScheme::Pbkdf2Sha512 => {
                    Hash::pbkdf2_sha512(&password, salt, options.iterations)
                }
                HashScheme::Sha512 => Hash::salted_sha512(&password, salt),
            };
            file.set(user, hash).map_err(Error::Username)?;
            file
        }
        Action::Delete { user } => {
            let mut file =
                PasswordFile::parse(&read_text(path)?).map_err(|error| Error::Parse {
                    file: path.clone(),
                    error,
                })?;
            if !file.remove(user) {
                return Err(Error::UnknownUser {
                    user: user.clone(),
                    file: path.clone(),
                });
            }
            file
        }
        Action::Upgrade => {
            let text = read_text(path)?;
            let mut failure = None;
            let upgraded = PasswordFile::upgrade_plain(&text, options.iterations, || {
                random_salt().unwrap_or_else(|e| {
                    failure.get_or_insert(e);
                    [0; SALT_LEN]
                })
            });
            // A salt that failed leaves zeros in some hash: write nothing.
            if let Some(e) = failure {
                return Err(e);
            }
            let (file, _hashed) = upgraded.map_err(|error| Error::Parse {
                file: path.clone(),
                error,
            })?;
            file
        }
    };
    write_atomically(path, file.to_text().as_bytes())
}

/// FILE as text; a missing file is `Missing`, bytes that are not UTF-8 name
/// their line.
fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => Error::Missing {
            file: path.to_path_buf(),
        },
        _ => Error::Io {
            what: "read",
            path: path.to_path_buf(),
            error,
        },
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::NotUtf8 {
            file: path.to_path_buf(),
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })
}

/// The password from the terminal (asked twice, without echo) or, when stdin
/// is not a terminal, one line of stdin.
fn read_password() -> Result<Vec<u8>, Error> {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return read_line(&mut stdin, "stdin")?.ok_or(Error::NoPassword);
    }
    let echo_off = EchoOff::new().map_err(|error| Error::Io {
        what: "turn off echo on",
        path: PathBuf::from("the terminal"),
        error,
    })?;
    let first = prompt(&mut stdin, "Password: ")?;
    let second = prompt(&mut stdin, "Reenter password: ")?;
    drop(echo_off);
    if first != second {
        return Err(Error::Mismatch);
    }
    Ok(first)
}

/// Asks on stderr (stdout may be redirected) and reads one line.
fn prompt(stdin: &mut impl io::BufRead, text: &str) -> Result<Vec<u8>, Error> {
    eprint!("{text}");
    let line = read_line(stdin, "the terminal");
    // The Enter that ended the line was not echoed.
    eprintln!();
    line?.ok_or(Error::NoPassword)
}

/// One line without its `\n` or `\r\n`; `None` at end of input. An empty
/// line is `EmptyPassword` (as mosquitto_passwd refuses one at its prompt).
fn read_line(input: &mut impl io::BufRead, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let mut line = Vec::new();
    // One byte over the limit is enough to know it is too long, and bounds
    // what a runaway pipe can make us hold.
    let read = io::Read::take(&mut *input, MAX_PASSWORD_LEN as u64 + 3)
        .read_until(b'\n', &mut line)
        .map_err(|error| Error::Io {
            what: "read a password from",
            path: PathBuf::from(name),
            error,
        })?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        return Err(Error::EmptyPassword);
    }
    if line.len() > MAX_PASSWORD_LEN {
        return Err(Error::PasswordTooLong);
    }
    Ok(Some(line))
}

/// The terminal settings before echo was turned off, for the signal handler.
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();

/// Signals that end the process by default and can arrive mid-prompt.
const PROMPT_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Echo off on stdin while alive; the old settings come back on drop and,
/// through a signal handler, when a signal ends the process first.
struct EchoOff {
    saved: libc::termios,
    old_actions: Vec<(libc::c_int, libc::sigaction)>,
}

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: stdin's descriptor and a termios we own.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Set once per process: a second prompt saves the same settings.
        let _ = SAVED_TERMIOS.set(saved);
        let mut old_actions = Vec::new();
        for signal in PROMPT_SIGNALS {
            // SAFETY: sigaction is plain data; the handler only makes
            // async-signal-safe calls (see restore_and_reraise).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = restore_and_reraise as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    old_actions.push((signal, old));
                }
            }
        }
        let echo_off = EchoOff { saved, old_actions };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: stdin's descriptor and a termios we own. On failure the
        // drop of `echo_off` puts the handlers back.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(echo_off)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: stdin's descriptor, the settings read at `new`, and the
        // actions sigaction returned there.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
            for (signal, old) in &self.old_actions {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}

/// Puts the terminal back, then lets the signal do what it would have done
/// (SA_RESETHAND restored the default action before this ran).
extern "C" fn restore_and_reraise(signal: libc::c_int) {
    if let Some(saved) = SAVED_TERMIOS.get() {
        // SAFETY: tcsetattr and raise are async-signal-safe; `saved` was
        // written before the handler was installed and never changes.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
    // SAFETY: as above.
    unsafe { libc::raise(signal) };
}

/// A salt from the kernel's CSPRNG.
fn random_salt() -> Result<[u8; SALT_LEN], Error> {
    let mut salt = [0u8; SALT_LEN];
    crate::auth::os_random(&mut salt).map_err(Error::Random)?;
    Ok(salt)
}

/// Replaces `path` with `text` so that readers see the old file or the new
/// one, never a part: a temporary file in the same directory, synced, then
/// renamed over it, and the directory synced. A symlink is followed (its
/// target is replaced, the link stays); an existing file's mode and owner
/// are kept (the owner only as far as we may set it), a new one is 0600.
fn write_atomically(path: &Path, text: &[u8]) -> Result<(), Error> {
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(io_error("resolve", path)(e)),
    };
    let old = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read the metadata of", &target)(e)),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().unwrap_or(OsStr::new("passwd"));

    let (temp_path, mut temp) = create_temp(&dir, name)?;
    let temp_guard = RemoveOnDrop(Some(temp_path.clone()));
    let mode = old
        .as_ref()
        .map_or(NEW_FILE_MODE, |meta| meta.mode() & 0o7777);
    temp.write_all(text)
        .map_err(io_error("write", &temp_path))?;
    temp.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", &temp_path))?;
    if let Some(meta) = &old {
        let mine = temp
            .metadata()
            .map_err(io_error("read the metadata of", &temp_path))?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            if let Err(e) = std::os::unix::fs::fchown(&temp, Some(meta.uid()), Some(meta.gid())) {
                // Not fatal (mosquitto_passwd rewrites in place and so
                // keeps the owner; a rename needs chown rights for that),
                // but a broker running as the old owner may lose access.
                eprintln!(
                    "ringmq passwd: warning: {} was owned by {}:{}, now by {}:{} ({e})",
                    target.display(),
                    meta.uid(),
                    meta.gid(),
                    mine.uid(),
                    mine.gid()
                );
            }
        }
    }
    temp.sync_all().map_err(io_error("sync", &temp_path))?;
    drop(temp);
    fs::rename(&temp_path, &target).map_err(io_error("replace", &target))?;
    std::mem::forget(temp_guard);
    // The rename is durable once the directory is.
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync the directory", &dir))
}

/// `map_err` for an I/O step of `write_atomically`.
fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |error| Error::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// Creates `.NAME.PID.N.tmp` in `dir`, mode 0600, never reusing a file.
fn create_temp(dir: &Path, name: &OsStr) -> Result<(PathBuf, fs::File), Error> {
    let pid = std::process::id();
    let mut attempt = 0u32;
    loop {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{pid}.{attempt}.tmp"));
        let temp_path = dir.join(temp_name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(error) => {
                return Err(Error::Io {
                    what: "create a temporary file in",
                    path: dir.to_path_buf(),
                    error,
                })
            }
        }
    }
}

/// Removes the temporary file when a step before the rename fails.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, Error> {
        match Options::parse(args.iter().map(OsString::from))? {
            Parsed::Run(options) => Ok(options),
            Parsed::Help => panic!("help for {args:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse(args) {
            Err(Error::Usage(why)) => why,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_and_operands() {
        let o = parse(&["-cb", "-I", "500", "f", "u", "p"]).unwrap();
        assert_eq!(o.iterations.get(), 500);
        assert_eq!(o.file, PathBuf::from("f"));
        assert!(matches!(
            o.action,
            Action::Set { create: true, ref user, password: Some(ref p) } if user == "u" && p == "p"
        ));
        let o = parse(&["-I1000", "-H", "sha512", "f", "u"]).unwrap();
        assert_eq!(o.iterations.get(), 1000);
        assert_eq!(o.scheme, HashScheme::Sha512);
        assert!(matches!(
            o.action,
            Action::Set {
                create: false,
                password: None,
                ..
            }
        ));
        assert!(matches!(
            parse(&["-U", "f"]).unwrap().action,
            Action::Upgrade
        ));
        assert!(matches!(
            parse(&["-D", "f", "u"]).unwrap().action,
            Action::Delete { .. }
        ));
        // `--` lets a file start with '-'.
        assert_eq!(parse(&["--", "-f", "u"]).unwrap().file, PathBuf::from("-f"));
        assert!(matches!(
            Options::parse(["-h"].map(OsString::from)),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn usage_errors() {
        for (args, want) in [
            (
                &["-c", "-D", "f", "u"][..],
                "-c and -D cannot be used together",
            ),
            (&["-U", "-c", "f"], "-c and -U cannot be used together"),
            (&["-D", "-U", "f"], "-D and -U cannot be used together"),
            (
                &["-b", "-D", "f", "u", "p"],
                "-b and -D cannot be used together",
            ),
            (&["-U", "f", "u"], "expected FILE, got 2 operands"),
            (
                &["-b", "f", "u"],
                "expected FILE USER PASSWORD, got 2 operands",
            ),
            (&["f"], "expected FILE USER, got 1 operand"),
            (
                &["-I", "0", "f", "u"],
                "-I 0: iterations must be a number from 1 to 4294967295",
            ),
            (&["-I"], "-I needs a value"),
            (
                &["-H", "md5", "f", "u"],
                "-H md5: unknown hash (sha512-pbkdf2 or sha512)",
            ),
            (&["-x", "f", "u"], "unknown option -x"),
        ] {
            assert_eq!(usage_error(args), want, "{args:?}");
        }
    }

    #[test]
    fn lines_of_input() {
        let mut input: &[u8] = b"first\r\nsecond\n\nthird";
        assert_eq!(read_line(&mut input, "t").unwrap(), Some(b"first".to_vec()));
        assert_eq!(
            read_line(&mut input, "t").unwrap(),
            Some(b"second".to_vec())
        );
        assert!(matches!(
            read_line(&mut input, "t"),
            Err(Error::EmptyPassword)
        ));
        assert_eq!(read_line(&mut input, "t").unwrap(), Some(b"third".to_vec()));
        assert_eq!(read_line(&mut input, "t").unwrap(), None);
        let long = vec![b'x'; MAX_PASSWORD_LEN + 10];
        assert!(matches!(
            read_line(&mut &long[..], "t"),
            Err(Error::PasswordTooLong)
        ));
        let longest = vec![b'x'; MAX_PASSWORD_LEN];
        assert_eq!(
            read_line(&mut &longest[..], "t").unwrap().map(|l| l.len()),
            Some(MAX_PASSWORD_LEN)
        );
    }

    #[test]
    fn salts_differ() {
        assert_ne!(random_salt().unwrap(), random_salt().unwrap());
    }
}
