//! The syntax tree of a script, from tokens (no I/O).
//!
//! ```text
//! script    := statement (NEWLINE|; statement)*
//! statement := $var = pipeline | pipeline
//! pipeline  := element (| command)*        element := command | expr
//! command   := WORD (-Param | -Param: expr | expr)*
//! expr      := unary (, unary)*            unary := [Type] unary | primary
//! primary   := WORD | "string" | $var | $( script ) | ( pipeline )
//! ```
//!
//! Whether `-Name value` gives `value` to `-Name` depends on the parameter's
//! type (a switch takes none), which only the cmdlet knows: a command keeps
//! its arguments as written and `bind` decides.

use super::lexer::{Spanned, StrPart, Token};

/// A whole script: statements run in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The statements.
    pub statements: Vec<Statement>,
}

/// One statement and its line.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// `$var = …`, when assigned.
    pub assign: Option<String>,
    /// What runs.
    pub pipeline: Pipeline,
    /// The line it starts on.
    pub line: usize,
}

/// Elements joined by `|`: the first may be an expression, the rest are commands.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// An expression feeding the first command (`$Data1 | Set-Content …`).
    pub head: Option<Expr>,
    /// The commands.
    pub commands: Vec<Command>,
}

/// A cmdlet call as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The cmdlet's name as typed.
    pub name: String,
    /// Its arguments in order.
    pub args: Vec<Arg>,
}

/// One argument of a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// `-Name` (the value, if the parameter takes one, is the next `Value`).
    Param(String),
    /// `-Name:value`.
    ParamWith(String, Expr),
    /// A value: a positional argument or the previous parameter's value.
    Value(Expr),
}

/// A value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A bareword.
    Word(String),
    /// A quoted string.
    Str(Vec<StrPart>),
    /// `$name`.
    Var(String),
    /// `a,b,c`.
    List(Vec<Expr>),
    /// `[Type]expr`.
    Cast(String, Box<Expr>),
    /// `$( … )`.
    Sub(Box<Script>),
    /// `( … )`.
    Paren(Box<Pipeline>),
}

/// Why tokens do not form a script.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// Where.
    pub line: usize,
    /// What is wrong, for the administrator.
    pub message: String,
}

/// Parses tokens into a script.
pub fn parse(tokens: &[Spanned]) -> Result<Script, ParseError> {
    let mut p = Parser { tokens, pos: 0 };
    let script = p.script(false)?;
    if let Some(t) = p.peek() {
        return Err(p.error(format!("unexpected {}", describe(t))));
    }
    Ok(script)
}

struct Parser<'a> {
    tokens: &'a [Spanned],
    pos: usize,
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("word {w:?}"),
        Token::Param(p) | Token::ParamColon(p) => format!("parameter -{p}"),
        Token::Str(_) => "string".into(),
        Token::Var(v) => format!("${v}"),
        Token::SubStart => "$(".into(),
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
        Token::Comma => "','".into(),
        Token::Pipe => "'|'".into(),
        Token::Semi => "';'".into(),
        Token::Assign => "'='".into(),
        Token::NewLine => "end of line".into(),
        Token::Type(t) => format!("[{t}]"),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|s| &s.token)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .map_or(1, |s| s.line)
    }

    fn error(&self, message: String) -> ParseError {
        ParseError {
            line: self.line(),
            message,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|s| s.token.clone());
        self.pos += 1;
        t
    }

    /// Statements until the end, or until `)` when `nested`.
    fn script(&mut self, nested: bool) -> Result<Script, ParseError> {
        let mut statements = Vec::new();
        loop {
            while matches!(self.peek(), Some(Token::NewLine | Token::Semi)) {
                self.pos += 1;
            }
            match self.peek() {
                None => break,
                Some(Token::RParen) if nested => break,
                Some(_) => statements.push(self.statement()?),
            }
            match self.peek() {
                None | Some(Token::NewLine | Token::Semi) => {}
                Some(Token::RParen) if nested => {}
                Some(t) => return Err(self.error(format!("unexpected {} after a statement", describe(t)))),
            }
        }
        Ok(Script { statements })
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let line = self.line();
        let assign = match (self.peek(), self.tokens.get(self.pos + 1).map(|s| &s.token)) {
            (Some(Token::Var(name)), Some(Token::Assign)) => {
                let name = name.clone();
                self.pos += 2;
                Some(name)
            }
            _ => None,
        };
        let pipeline = self.pipeline()?;
        Ok(Statement {
            assign,
            pipeline,
            line,
        })
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let mut head = None;
        let mut commands = Vec::new();
        match self.peek() {
            Some(Token::Word(_)) => commands.push(self.command()?),
            Some(_) => head = Some(self.expr()?),
            None => return Err(self.error("a command is missing".into())),
        }
        while self.peek() == Some(&Token::Pipe) {
            self.pos += 1;
            match self.peek() {
                Some(Token::Word(_)) => commands.push(self.command()?),
                Some(t) => return Err(self.error(format!("a command must follow '|', not {}", describe(t)))),
                None => return Err(self.error("a command must follow '|'".into())),
            }
        }
        Ok(Pipeline { head, commands })
    }

    fn command(&mut self) -> Result<Command, ParseError> {
        let Some(Token::Word(name)) = self.next() else {
            return Err(self.error("a command name is missing".into()));
        };
        let mut args = Vec::new();
        loop {
            match self.peek() {
                None | Some(Token::NewLine | Token::Semi | Token::Pipe | Token::RParen) => break,
                Some(Token::Param(p)) => {
                    args.push(Arg::Param(p.clone()));
                    self.pos += 1;
                }
                Some(Token::ParamColon(p)) => {
                    let p = p.clone();
                    self.pos += 1;
                    if matches!(
                        self.peek(),
                        None | Some(Token::NewLine | Token::Semi | Token::Pipe)
                    ) {
                        return Err(self.error(format!("-{p}: needs a value after the colon")));
                    }
                    args.push(Arg::ParamWith(p, self.expr()?));
                }
                Some(Token::Assign) => return Err(self.error("'=' is only for $variable = …".into())),
                Some(_) => args.push(Arg::Value(self.expr()?)),
            }
        }
        Ok(Command { name, args })
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        if self.peek() != Some(&Token::Comma) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek() == Some(&Token::Comma) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(Expr::List(items))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if let Some(Token::Type(t)) = self.peek() {
            let t = t.clone();
            self.pos += 1;
            return Ok(Expr::Cast(t, Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(Expr::Word(w)),
            Some(Token::Str(parts)) => Ok(Expr::Str(parts)),
            Some(Token::Var(v)) => Ok(Expr::Var(v)),
            Some(Token::SubStart) => {
                let script = self.script(true)?;
                self.close()?;
                Ok(Expr::Sub(Box::new(script)))
            }
            Some(Token::LParen) => {
                while self.peek() == Some(&Token::NewLine) {
                    self.pos += 1;
                }
                let pipeline = self.pipeline()?;
                self.close()?;
                Ok(Expr::Paren(Box::new(pipeline)))
            }
            Some(t) => {
                self.pos -= 1;
                Err(self.error(format!("a value is missing before {}", describe(&t))))
            }
            None => Err(self.error("a value is missing at the end".into())),
        }
    }

    fn close(&mut self) -> Result<(), ParseError> {
        while self.peek() == Some(&Token::NewLine) {
            self.pos += 1;
        }
        match self.next() {
            Some(Token::RParen) => Ok(()),
            Some(t) => {
                self.pos -= 1;
                Err(self.error(format!("expected ')', found {}", describe(&t))))
            }
            None => Err(self.error("expected ')'".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn script(text: &str) -> Script {
        parse(&lex(text).unwrap().tokens).unwrap()
    }

    fn word(s: &str) -> Expr {
        Expr::Word(s.into())
    }

    #[test]
    fn assignment_then_reuse() {
        let s = script(
            "$Data1 = New-ExchangeCertificate -GenerateRequest -SubjectName \"CN=x\"\nSet-Content -Path x.req -Value $Data1",
        );
        assert_eq!(s.statements.len(), 2);
        assert_eq!(s.statements[0].assign.as_deref(), Some("Data1"));
        let c = &s.statements[0].pipeline.commands[0];
        assert_eq!(c.name, "New-ExchangeCertificate");
        assert_eq!(c.args[0], Arg::Param("GenerateRequest".into()));
        assert_eq!(s.statements[1].line, 2);
        assert_eq!(
            s.statements[1].pipeline.commands[0].args[3],
            Arg::Value(Expr::Var("Data1".into()))
        );
    }

    #[test]
    fn the_seeds_import_pipeline() {
        let s = script(
            "Import-ExchangeCertificate -FileData ([Byte[]]$(Get-Content -Path C:\\Certificates\\VAN-EX2-certificate.pfx -Encoding Byte -ReadCount 0)) | Enable-ExchangeCertificate -Services SMTP",
        );
        let p = &s.statements[0].pipeline;
        assert_eq!(p.commands.len(), 2);
        let Arg::Value(Expr::Paren(inner)) = &p.commands[0].args[1] else {
            panic!("{:?}", p.commands[0].args)
        };
        let Some(Expr::Cast(ty, sub)) = &inner.head else {
            panic!("{inner:?}")
        };
        assert_eq!(ty, "Byte[]");
        let Expr::Sub(sub) = sub.as_ref() else { panic!() };
        assert_eq!(sub.statements[0].pipeline.commands[0].name, "Get-Content");
        assert_eq!(p.commands[1].args[1], Arg::Value(word("SMTP")));
    }

    #[test]
    fn lists_colon_values_and_statements_on_one_line() {
        let s = script(
            "Get-SendConnector Internet | FL Name,DNSRoutingEnabled,FQDN; Set-SendConnector Internet -DomainSecureEnabled:$true",
        );
        assert_eq!(s.statements.len(), 2);
        assert_eq!(
            s.statements[0].pipeline.commands[1].args[0],
            Arg::Value(Expr::List(vec![
                word("Name"),
                word("DNSRoutingEnabled"),
                word("FQDN")
            ]))
        );
        assert_eq!(
            s.statements[1].pipeline.commands[0].args[1],
            Arg::ParamWith("DomainSecureEnabled".into(), Expr::Var("true".into()))
        );
    }

    #[test]
    fn an_expression_can_feed_a_pipeline() {
        let s = script("$Data1 | Set-Content -Path x");
        assert_eq!(s.statements[0].pipeline.head, Some(Expr::Var("Data1".into())));
    }

    #[test]
    fn malformed_scripts_are_refused_with_a_line() {
        for text in [
            "Get-X | ",
            "Get-X | 'a'",
            "Get-X -A:",
            "Get-X (Get-Y",
            "Get-X )",
            "Get-X a =",
            "Get-X a,",
        ] {
            let result = lex(text)
                .map_err(|e| e.to_string())
                .and_then(|l| parse(&l.tokens).map_err(|e| e.to_string()));
            assert!(result.is_err(), "{text} parsed: {result:?}");
        }
    }
}
