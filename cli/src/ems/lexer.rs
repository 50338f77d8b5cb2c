//! Tokens of the PowerShell subset `postern ems` reads, from text (no I/O).
//!
//! PowerShell's argument-mode rules, as far as the seeds need them:
//! barewords (`Internet`, `C:\Certificates\x.req`, `mail.adatum.com`),
//! parameters `-Name` and `-Name:` (any of the dashes PowerShell accepts:
//! `-`, `–`, `—`, `―`), single- and double-quoted strings (double ones
//! expand `$var`; straight and typographic quotes), `$var`, `$(`, `(`, `)`,
//! `,`, `|`, `;`, `=`, type literals `[Byte[]]`, `#` comments and a
//! backtick at the end of a line.
//!
//! The seeds were printed on a page, whose line breaks fall inside commands.
//! Where PowerShell would end the statement but the text can only mean one
//! thing, the break is read as the page's wrap and a note says so:
//! a line that starts with a parameter continues the command; a word ending
//! in `\` continues on the next line (`C:\Certificates\` + `VAN-EX2-….pfx`);
//! a next line starting with `.` and a letter continues the word
//! (`mail` + `.adatum.com`). Inside parentheses and after `|` a line break is
//! only a space, as in PowerShell. Line breaks inside quoted strings are
//! kept here; cmdlet parameters that are names fold them (see `translate`).
//! About half of this file is its unit tests.

/// A token and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Its line in the script.
    pub line: usize,
}

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A bareword: a cmdlet name, an identity, a path, a number.
    Word(String),
    /// `-Name` (its value, if any, is the next token).
    Param(String),
    /// `-Name:` (its value is the next token, even `$false`).
    ParamColon(String),
    /// A quoted string; single-quoted ones are one literal part.
    Str(Vec<StrPart>),
    /// `$name` (also `$true`, `$false`, `$null`).
    Var(String),
    /// `$(`.
    SubStart,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `|`.
    Pipe,
    /// `;`.
    Semi,
    /// `=` standing alone.
    Assign,
    /// The end of a statement's line.
    NewLine,
    /// A type literal such as `[Byte[]]`, without the outer brackets.
    Type(String),
}

/// A piece of a quoted string.
#[derive(Clone, Debug, PartialEq)]
pub enum StrPart {
    /// Text as written (escapes resolved).
    Literal(String),
    /// `$name` inside double quotes.
    Var(String),
}

/// The tokens of a script and the notes on how its line breaks were read.
#[derive(Debug, Default)]
pub struct Lexed {
    /// The tokens, in order.
    pub tokens: Vec<Spanned>,
    /// One note per line break read as a page's wrap.
    pub notes: Vec<String>,
}

/// Why a script cannot be tokenised.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LexError {
    /// The text ends inside a string, a type literal or parentheses, or
    /// after `|` or a line-ending backtick: more lines may complete it.
    #[error("line {line}: the statement is not complete ({what})")]
    Incomplete {
        /// Where the unfinished part starts.
        line: usize,
        /// What is left open.
        what: &'static str,
    },
    /// A character this subset does not read.
    #[error("line {line}: {what} is not supported by postern ems")]
    Unsupported {
        /// Where.
        line: usize,
        /// What was found.
        what: String,
    },
}

const DASHES: [char; 4] = ['-', '\u{2013}', '\u{2014}', '\u{2015}'];
const DOUBLE_QUOTES: [char; 4] = ['"', '\u{201c}', '\u{201d}', '\u{201e}'];
const SINGLE_QUOTES: [char; 4] = ['\'', '\u{2018}', '\u{2019}', '\u{201a}'];

fn is_dash(c: char) -> bool {
    DASHES.contains(&c)
}

/// Characters that end a bareword.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '|' | ';' | ',' | '(' | ')' | '{' | '}') || DOUBLE_QUOTES.contains(&c)
}

/// Tokenises a whole script.
pub fn lex(text: &str) -> Result<Lexed, LexError> {
    Lexer {
        chars: text.chars().filter(|c| *c != '\r').collect(),
        pos: 0,
        line: 1,
        depth: 0,
        out: Lexed::default(),
    }
    .run()
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// Open parentheses (`(` and `$(`): inside them a line break is a space.
    depth: usize,
    out: Lexed,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, token: Token, line: usize) {
        self.out.tokens.push(Spanned { token, line });
    }

    fn last(&self) -> Option<&Token> {
        self.out.tokens.last().map(|s| &s.token)
    }

    /// The first character of the next line after the newline at `pos`,
    /// skipping spaces and tabs, and the one after it.
    fn next_line_start(&self) -> (Option<char>, Option<char>) {
        let mut i = self.pos + 1;
        while matches!(self.chars.get(i), Some(' ' | '\t')) {
            i += 1;
        }
        (self.chars.get(i).copied(), self.chars.get(i + 1).copied())
    }

    fn run(mut self) -> Result<Lexed, LexError> {
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match c {
                ' ' | '\t' | '\u{a0}' | '\u{feff}' => {
                    self.bump();
                }
                '\n' => self.newline(),
                '#' => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                '<' if self.peek(1) == Some('#') => self.block_comment()?,
                '`' if matches!(self.peek(1), Some('\n') | None) => {
                    self.bump();
                    if self.bump().is_none() {
                        return Err(LexError::Incomplete {
                            line,
                            what: "a backtick ends the text",
                        });
                    }
                }
                '|' => {
                    self.bump();
                    self.push(Token::Pipe, line);
                }
                ';' => {
                    self.bump();
                    self.push(Token::Semi, line);
                }
                ',' => {
                    self.bump();
                    self.push(Token::Comma, line);
                }
                '(' => {
                    self.bump();
                    self.depth += 1;
                    self.push(Token::LParen, line);
                }
                ')' => {
                    self.bump();
                    self.depth = self.depth.saturating_sub(1);
                    self.push(Token::RParen, line);
                }
                '{' | '}' => {
                    return Err(LexError::Unsupported {
                        line,
                        what: "a script block ({ … })".into(),
                    });
                }
                '=' if self.peek(1).is_none_or(|n| n.is_whitespace()) => {
                    self.bump();
                    self.push(Token::Assign, line);
                }
                '[' => self.type_literal()?,
                '$' => self.dollar()?,
                c if DOUBLE_QUOTES.contains(&c) => self.double_quoted()?,
                c if SINGLE_QUOTES.contains(&c) => self.single_quoted()?,
                c if is_dash(c) && self.peek(1).is_some_and(|n| n.is_alphabetic()) => self.param(),
                _ => self.word()?,
            }
        }
        if self.depth > 0 {
            return Err(LexError::Incomplete {
                line: self.line,
                what: "a parenthesis is still open",
            });
        }
        if self.last() == Some(&Token::Pipe) {
            return Err(LexError::Incomplete {
                line: self.line,
                what: "the line ends with |",
            });
        }
        Ok(self.out)
    }

    fn newline(&mut self) {
        let line = self.line;
        let (first, second) = self.next_line_start();
        self.bump();
        if self.depth > 0 || self.last() == Some(&Token::Pipe) {
            return;
        }
        let starts_param = first.is_some_and(is_dash) && second.is_some_and(char::is_alphabetic);
        let continues_command = matches!(
            self.last(),
            Some(Token::Word(_) | Token::Param(_) | Token::Str(_) | Token::Var(_) | Token::RParen)
        ) && self
            .out
            .tokens
            .iter()
            .rev()
            .take_while(|t| !matches!(t.token, Token::NewLine | Token::Semi))
            .any(|t| matches!(&t.token, Token::Word(w) if w.contains('-')));
        if starts_param && continues_command {
            let name: String = self.chars[self.pos..]
                .iter()
                .skip_while(|c| c.is_whitespace())
                .skip(1)
                .take_while(|c| c.is_alphanumeric())
                .collect();
            self.out.notes.push(format!(
                "line {line}: the line break before -{name} is read as the page's wrap (the command continues)"
            ));
            return;
        }
        if self.last() != Some(&Token::NewLine) && !self.out.tokens.is_empty() {
            self.push(Token::NewLine, line);
        }
    }

    fn block_comment(&mut self) -> Result<(), LexError> {
        let line = self.line;
        self.bump();
        self.bump();
        loop {
            match self.bump() {
                Some('#') if self.peek(0) == Some('>') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    return Err(LexError::Incomplete {
                        line,
                        what: "a <# comment is not closed",
                    });
                }
            }
        }
    }

    fn type_literal(&mut self) -> Result<(), LexError> {
        let line = self.line;
        self.bump();
        let mut depth = 1;
        let mut name = String::new();
        while depth > 0 {
            match self.bump() {
                Some('[') => {
                    depth += 1;
                    name.push('[');
                }
                Some(']') => {
                    depth -= 1;
                    if depth > 0 {
                        name.push(']');
                    }
                }
                Some('\n') | None => {
                    return Err(LexError::Incomplete {
                        line,
                        what: "a [type] is not closed",
                    });
                }
                Some(c) => name.push(c),
            }
        }
        self.push(Token::Type(name.trim().to_owned()), line);
        Ok(())
    }

    fn variable_name(&mut self) -> String {
        let mut name = String::new();
        if self.peek(0) == Some('{') {
            self.bump();
            while let Some(c) = self.bump() {
                if c == '}' {
                    break;
                }
                name.push(c);
            }
            return name;
        }
        while let Some(c) = self.peek(0) {
            if c.is_alphanumeric() || c == '_' || (c == ':' && name.eq_ignore_ascii_case("env")) {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        name
    }

    fn dollar(&mut self) -> Result<(), LexError> {
        let line = self.line;
        self.bump();
        if self.peek(0) == Some('(') {
            self.bump();
            self.depth += 1;
            self.push(Token::SubStart, line);
            return Ok(());
        }
        let name = self.variable_name();
        if name.is_empty() {
            return Err(LexError::Unsupported {
                line,
                what: "a $ that names no variable".into(),
            });
        }
        self.push(Token::Var(name), line);
        Ok(())
    }

    fn single_quoted(&mut self) -> Result<(), LexError> {
        let line = self.line;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                Some(c) if SINGLE_QUOTES.contains(&c) => {
                    if self.peek(0).is_some_and(|n| SINGLE_QUOTES.contains(&n)) {
                        self.bump();
                        text.push('\'');
                    } else {
                        break;
                    }
                }
                Some(c) => text.push(c),
                None => {
                    return Err(LexError::Incomplete {
                        line,
                        what: "a quoted string is not closed",
                    });
                }
            }
        }
        self.push(Token::Str(vec![StrPart::Literal(text)]), line);
        Ok(())
    }

    fn double_quoted(&mut self) -> Result<(), LexError> {
        let line = self.line;
        self.bump();
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            match self.bump() {
                Some(c) if DOUBLE_QUOTES.contains(&c) => {
                    if self.peek(0).is_some_and(|n| DOUBLE_QUOTES.contains(&n)) {
                        self.bump();
                        text.push('"');
                    } else {
                        break;
                    }
                }
                Some('`') => match self.bump() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('0') => text.push('\0'),
                    Some(c) => text.push(c),
                    None => break,
                },
                Some('$') if self.peek(0) == Some('(') => {
                    return Err(LexError::Unsupported {
                        line,
                        what: "a $( … ) inside a string".into(),
                    });
                }
                Some('$')
                    if self
                        .peek(0)
                        .is_some_and(|n| n.is_alphanumeric() || n == '_' || n == '{') =>
                {
                    if !text.is_empty() {
                        parts.push(StrPart::Literal(std::mem::take(&mut text)));
                    }
                    parts.push(StrPart::Var(self.variable_name()));
                }
                Some(c) => text.push(c),
                None => {
                    return Err(LexError::Incomplete {
                        line,
                        what: "a quoted string is not closed",
                    });
                }
            }
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(StrPart::Literal(text));
        }
        self.push(Token::Str(parts), line);
        Ok(())
    }

    fn param(&mut self) {
        let line = self.line;
        self.bump();
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            if c.is_alphanumeric() || c == '_' {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if self.peek(0) == Some(':') {
            self.bump();
            self.push(Token::ParamColon(name), line);
        } else {
            self.push(Token::Param(name), line);
        }
    }

    fn word(&mut self) -> Result<(), LexError> {
        let line = self.line;
        let mut word = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\n' && !word.is_empty() {
                let (first, second) = self.next_line_start();
                let path_wrap = word.ends_with('\\') && first.is_some_and(|f| !ends_word(f) && !is_dash(f));
                let dot_wrap = first == Some('.') && second.is_some_and(char::is_alphanumeric);
                if !(path_wrap || dot_wrap) {
                    break;
                }
                self.bump();
                while matches!(self.peek(0), Some(' ' | '\t')) {
                    self.bump();
                }
                let rest: String = self.chars[self.pos..]
                    .iter()
                    .take_while(|c| !ends_word(**c))
                    .collect();
                self.out.notes.push(format!(
                    "line {line}: the line break between {word} and {rest} is read as the page's wrap (one word)"
                ));
                continue;
            }
            if ends_word(c) || SINGLE_QUOTES.contains(&c) && word.is_empty() {
                break;
            }
            if c == '`' {
                self.bump();
                if let Some(n) = self.bump() {
                    word.push(n);
                }
                continue;
            }
            word.push(c);
            self.bump();
        }
        if word.is_empty() {
            return Err(LexError::Unsupported {
                line,
                what: format!("the character {:?}", self.peek(0).unwrap_or(' ')),
            });
        }
        self.push(Token::Word(word), line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        lex(text).unwrap().tokens.into_iter().map(|s| s.token).collect()
    }

    fn word(s: &str) -> Token {
        Token::Word(s.into())
    }

    fn lit(s: &str) -> Token {
        Token::Str(vec![StrPart::Literal(s.into())])
    }

    #[test]
    fn parameters_with_colon_values_and_every_dash() {
        assert_eq!(
            tokens("Set-SendConnector Internet -DomainSecureEnabled:$true"),
            vec![
                word("Set-SendConnector"),
                word("Internet"),
                Token::ParamColon("DomainSecureEnabled".into()),
                Token::Var("true".into()),
            ]
        );
        assert_eq!(
            tokens("enable-exchangecertificate \u{2013}services SMTP"),
            vec![
                word("enable-exchangecertificate"),
                Token::Param("services".into()),
                word("SMTP")
            ]
        );
    }

    #[test]
    fn strings_lists_pipes_and_assignment() {
        assert_eq!(
            tokens("$Data1 = New-X -A 'it''s' ; Get-Y x | FL Name,FQDN"),
            vec![
                Token::Var("Data1".into()),
                Token::Assign,
                word("New-X"),
                Token::Param("A".into()),
                lit("it's"),
                Token::Semi,
                word("Get-Y"),
                word("x"),
                Token::Pipe,
                word("FL"),
                word("Name"),
                Token::Comma,
                word("FQDN"),
            ]
        );
        assert_eq!(
            tokens("\"a `\"b`\" $x\""),
            vec![Token::Str(vec![
                StrPart::Literal("a \"b\" ".into()),
                StrPart::Var("x".into())
            ])]
        );
        // A DN stays one word only when quoted; unquoted, commas split it.
        assert_eq!(
            tokens("\"c=us, o=Example Corp\""),
            vec![lit("c=us, o=Example Corp")]
        );
    }

    #[test]
    fn casts_subexpressions_and_windows_paths() {
        assert_eq!(
            tokens("([Byte[]]$(Get-Content -Path C:\\x.pfx -Encoding Byte -ReadCount 0))"),
            vec![
                Token::LParen,
                Token::Type("Byte[]".into()),
                Token::SubStart,
                word("Get-Content"),
                Token::Param("Path".into()),
                word("C:\\x.pfx"),
                Token::Param("Encoding".into()),
                word("Byte"),
                Token::Param("ReadCount".into()),
                word("0"),
                Token::RParen,
                Token::RParen,
            ]
        );
    }

    #[test]
    fn the_seeds_wrapped_lines_read_as_one_command() {
        let text = "$Data1 = New-ExchangeCertificate -GenerateRequest -FriendlyName \"Internet certificate\nfor VAN-EX2\" -SubjectName \"DC=com,DC=Adatum,CN=VAN-EX2.adatum.com\" -DomainName mail\n.adatum.com\nSet-Content -Path \"C:\\Certificates\\VAN-EX2-request.req\" -Value $Data1\n";
        let lexed = lex(text).unwrap();
        let t: Vec<Token> = lexed.tokens.into_iter().map(|s| s.token).collect();
        assert!(t.contains(&lit("Internet certificate\nfor VAN-EX2")));
        assert!(t.contains(&word("mail.adatum.com")), "{t:?}");
        assert_eq!(t.iter().filter(|t| **t == Token::NewLine).count(), 2);
        assert_eq!(lexed.notes.len(), 1, "{:?}", lexed.notes);

        let text = "Import-ExchangeCertificate -FileData ([Byte[]]$(Get-Content -Path C:\\Certificates\\\nVAN-EX2-certificate.pfx -Encoding Byte -ReadCount 0)) | Enable-ExchangeCertificate\n-Services SMTP\n";
        let lexed = lex(text).unwrap();
        let t: Vec<Token> = lexed.tokens.into_iter().map(|s| s.token).collect();
        assert!(
            t.contains(&word("C:\\Certificates\\VAN-EX2-certificate.pfx")),
            "{t:?}"
        );
        assert_eq!(t.iter().filter(|t| **t == Token::NewLine).count(), 1, "{t:?}");
        assert_eq!(t[t.len() - 3], Token::Param("Services".into()));
        assert_eq!(lexed.notes.len(), 2, "{:?}", lexed.notes);
    }

    #[test]
    fn ordinary_line_breaks_end_statements() {
        let t = tokens("Get-TransportConfig\nGet-SendConnector\n\n# a comment\nGet-Queue");
        assert_eq!(t.iter().filter(|t| **t == Token::NewLine).count(), 2);
        // A line starting with a dash but following no command is not joined.
        let t = tokens("$x = 1\n-Name");
        assert!(t.contains(&Token::NewLine));
        // After a pipe and inside parentheses a break is a space.
        let t = tokens("Get-SendConnector |\nFL Name");
        assert!(!t.contains(&Token::NewLine));
        // A backtick continues a line.
        let t = tokens("Get-SendConnector `\nInternet");
        assert!(!t.contains(&Token::NewLine));
    }

    #[test]
    fn incomplete_and_unsupported_text() {
        assert!(matches!(lex("Set-X -A \"open"), Err(LexError::Incomplete { .. })));
        assert!(matches!(lex("Get-X |"), Err(LexError::Incomplete { .. })));
        assert!(matches!(lex("Get-X (a"), Err(LexError::Incomplete { .. })));
        assert!(matches!(
            lex("Get-X | ? { $_ }"),
            Err(LexError::Unsupported { .. })
        ));
        assert!(matches!(lex("\"$(x)\""), Err(LexError::Unsupported { .. })));
    }

    #[test]
    fn hostile_text_does_not_panic() {
        for text in [
            "$", "[", "[[", "`", "\"`", "'", "-", "–", "<#", "$(", ")", "=", "${", "\u{0}",
        ] {
            let _ = lex(text);
        }
    }
}
