//! `--chmod` values: octal (`755`, `0644`) or symbolic (`u+x,g-w`, `a=rX`).
//!
//! Hand-written: the symbolic grammar is the small chmod(1) one, and the
//! crates that parse it target a live filesystem (they read the umask). As in
//! BuildKit, a symbolic mode is a transform applied to each entry's own source
//! mode; `X` follows Linux chmod: execute when the entry is a directory or
//! already has an execute bit, for every operator. A clause without a "who"
//! applies to all (no umask: builds must not depend on the builder's umask).

/// Why a `--chmod` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod value {value:?}: {reason}")]
pub struct ChmodError {
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An absolute mode (permission bits, setuid/setgid/sticky), 0..=0o7777.
    Octal(u32),
    /// Symbolic clauses applied in order to each entry's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    ops: Vec<(char, Perms)>,
}

/// The permission part of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// Literal `rwxXst` letters.
    Bits {
        r: bool,
        w: bool,
        x: bool,
        big_x: bool,
        s: bool,
        t: bool,
    },
    /// Copy another class's bits (`g=u`).
    Copy(char),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl Chmod {
    /// Parses an octal or symbolic value.
    pub fn parse(value: &str) -> Result<Chmod, ChmodError> {
        let err = |reason| ChmodError {
            value: value.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| err("not an octal number"))?;
            if mode > 0o7777 {
                return Err(err("octal mode must be between 0 and 07777"));
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            clauses.push(parse_clause(part).map_err(err)?);
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode an entry gets, given its source mode (permission bits) and
    /// whether it is a directory.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let original = mode & 0o7777;
                clauses
                    .iter()
                    .fold(original, |m, c| c.apply(m, original, is_dir))
            }
        }
    }
}

fn parse_clause(part: &str) -> Result<Clause, &'static str> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => WHO_U,
            'g' => WHO_G,
            'o' => WHO_O,
            'a' => WHO_U | WHO_G | WHO_O,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = WHO_U | WHO_G | WHO_O;
    }
    let mut ops = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return Err("expected one of + - = after who");
        }
        let perms = match chars.peek() {
            Some(&c @ ('u' | 'g' | 'o')) => {
                chars.next();
                Perms::Copy(c)
            }
            _ => {
                let (mut r, mut w, mut x, mut big_x, mut s, mut t) = Default::default();
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => r = true,
                        'w' => w = true,
                        'x' => x = true,
                        'X' => big_x = true,
                        's' => s = true,
                        't' => t = true,
                        '+' | '-' | '=' => break,
                        _ => return Err("unknown permission letter"),
                    }
                    chars.next();
                }
                Perms::Bits {
                    r,
                    w,
                    x,
                    big_x,
                    s,
                    t,
                }
            }
        };
        ops.push((op, perms));
    }
    if ops.is_empty() {
        return Err("missing operator");
    }
    Ok(Clause { who, ops })
}

impl Clause {
    fn apply(&self, mut mode: u32, original: u32, is_dir: bool) -> u32 {
        for (op, perms) in &self.ops {
            let bits = match perms {
                Perms::Bits {
                    r,
                    w,
                    x,
                    big_x,
                    s,
                    t,
                } => {
                    let exec = *x || (*big_x && (is_dir || original & 0o111 != 0));
                    let mut b = 0;
                    if *r {
                        b |= 0o444;
                    }
                    if *w {
                        b |= 0o222;
                    }
                    if exec {
                        b |= 0o111;
                    }
                    if *s {
                        b |= 0o6000;
                    }
                    if *t {
                        b |= 0o1000;
                    }
                    b & self.who
                }
                Perms::Copy(from) => {
                    let rwx = match from {
                        'u' => (mode >> 6) & 7,
                        'g' => (mode >> 3) & 7,
                        _ => mode & 7,
                    };
                    (rwx << 6 | rwx << 3 | rwx) & self.who & 0o777
                }
            };
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                _ => (mode & !self.who) | bits,
            };
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(v: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(v).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_values() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0644").unwrap(), Chmod::Octal(0o644));
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o600, false), 0o4755);
        assert!(Chmod::parse("10000").is_err());
        assert!(Chmod::parse("8").is_err());
        assert!(Chmod::parse("").is_err());
    }

    #[test]
    fn symbolic_values() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("g-w", 0o664, false), 0o644);
        assert_eq!(sym("u+x,g-w", 0o664, false), 0o744);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("go=", 0o777, false), 0o700);
        assert_eq!(sym("g=u", 0o740, false), 0o770);
        assert_eq!(sym("u=rw-x", 0o755, false), 0o655);
    }

    #[test]
    fn capital_x_depends_on_kind_and_original_mode() {
        assert_eq!(sym("a=rX", 0o600, false), 0o444);
        assert_eq!(sym("a=rX", 0o700, false), 0o555);
        assert_eq!(sym("a=rX", 0o700, true), 0o555);
        assert_eq!(sym("u=rwX,go=rX", 0o600, true), 0o755);
        assert_eq!(sym("u=rwX,go=rX", 0o600, false), 0o644);
    }

    #[test]
    fn bad_symbolic_values() {
        for v in ["u", "u+q", "x+r", "u+r,", "a=r,,g+w"] {
            assert!(Chmod::parse(v).is_err(), "{v}");
        }
    }
}
