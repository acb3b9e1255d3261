//! The table a failed statement writes, read from a consumer's error record
//! (runbook C1 when PostgreSQL names only the column).
//!
//! Only a statement the log marks as the one that failed counts: pgjdbc's
//! `Batch entry N <sql> was aborted`, MyBatis's `### SQL: <sql>`, Spring's
//! `bad SQL grammar [<sql>]` and `for SQL [<sql>]`. Of that statement only
//! its head is read (`INSERT INTO name`, `UPDATE [ONLY] name`), so a word
//! in a row value, an `ON CONFLICT … DO UPDATE`, or text elsewhere in the
//! record never names the table. Names are read as PostgreSQL reads them:
//! unquoted identifiers fold to lower case, quoted ones are kept exactly
//! (`""` is a quote), and a qualified name gives its schema.

/// A table as a statement names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementTable {
    /// Empty when the statement does not name one (the search path's).
    pub schema: String,
    pub table: String,
}

const MARKERS: [&str; 4] = ["Batch entry ", "### SQL:", "bad SQL grammar [", "for SQL ["];

/// The one table the record's failed statements write, or `None` when no
/// marked statement names one, or they name different tables (a person
/// must then say which).
pub fn failed_statement_table(record: &str) -> Option<StatementTable> {
    let mut found: Option<StatementTable> = None;
    for marker in MARKERS {
        for (at, _) in record.match_indices(marker) {
            let mut rest = &record[at + marker.len()..];
            if marker == "Batch entry " {
                // `Batch entry 3 INSERT …`: the entry's number first.
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    continue;
                }
                rest = &rest[digits..];
            }
            let Some(table) = head_table(rest) else { continue };
            match &found {
                Some(f) if *f != table => return None,
                _ => found = Some(table),
            }
        }
    }
    found
}

/// The table of `INSERT INTO name` or `UPDATE [ONLY] name` at the start of
/// `sql` (after blanks).
fn head_table(sql: &str) -> Option<StatementTable> {
    let mut p = Parser(sql);
    p.blanks();
    let first = p.word()?;
    if first.eq_ignore_ascii_case("insert") {
        p.blanks();
        if !p.word()?.eq_ignore_ascii_case("into") {
            return None;
        }
    } else if first.eq_ignore_ascii_case("update") {
        p.blanks();
        let save = p.0;
        match p.word() {
            Some(w) if w.eq_ignore_ascii_case("only") => {}
            _ => p.0 = save,
        }
    } else {
        return None;
    }
    p.blanks();
    // catalog.schema.table at most; the last two parts are what matter.
    let mut parts = vec![p.ident()?];
    while parts.len() < 3 && p.0.starts_with('.') {
        p.0 = &p.0[1..];
        parts.push(p.ident()?);
    }
    let table = parts.pop()?;
    let schema = parts.pop().unwrap_or_default();
    Some(StatementTable { schema, table })
}

struct Parser<'a>(&'a str);

impl<'a> Parser<'a> {
    fn blanks(&mut self) {
        self.0 = self.0.trim_start();
    }

    /// An SQL keyword: ASCII letters.
    fn word(&mut self) -> Option<&'a str> {
        let n = self.0.bytes().take_while(u8::is_ascii_alphabetic).count();
        (n > 0).then(|| {
            let (w, rest) = self.0.split_at(n);
            self.0 = rest;
            w
        })
    }

    /// An identifier as PostgreSQL reads it.
    fn ident(&mut self) -> Option<String> {
        if let Some(quoted) = self.0.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                if c != '"' {
                    name.push(c);
                    continue;
                }
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                    continue;
                }
                self.0 = &quoted[i + 1..];
                return (!name.is_empty()).then_some(name);
            }
            return None;
        }
        let first = self.0.chars().next()?;
        if !(first.is_alphabetic() || first == '_') {
            return None;
        }
        let n = self.0.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(self.0.len());
        let (name, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(name.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(record: &str) -> Option<(String, String)> {
        failed_statement_table(record).map(|t| (t.schema, t.table))
    }

    fn t(schema: &str, table: &str) -> Option<(String, String)> {
        Some((schema.into(), table.into()))
    }

    #[test]
    fn the_marked_statement_names_the_table() {
        assert_eq!(
            table("Batch entry 0 INSERT INTO t_order (id) VALUES (1) was aborted: ERROR: column \"c\" does not exist"),
            t("", "t_order")
        );
        assert_eq!(table("### SQL: update public.t_user set memo = ? where id = ?"), t("public", "t_user"));
        assert_eq!(
            table("PreparedStatementCallback; bad SQL grammar [insert into T_Item (a) values (?)]; nested exception"),
            t("", "t_item")
        );
        assert_eq!(table("Batch entry 2 UPDATE ONLY \"Sales\".\"T_Order\" SET x = 1"), t("Sales", "T_Order"));
        assert_eq!(table("### SQL: insert into trade.public.t (a) values (1)"), t("public", "t"));
        assert_eq!(table("### SQL: insert into \"a\"\"b\" (x) values (1)"), t("", "a\"b"));
    }

    #[test]
    fn never_a_word_from_a_row_value_or_elsewhere_in_the_record() {
        // The row printed before the failing statement says "update t_admin".
        let record = "ERROR sync failed for row {memo=please update t_admin soon}\n\
                      java.sql.BatchUpdateException: Batch entry 0 INSERT INTO t_order (id, memo) VALUES (1, 'please update t_admin soon') \
                      ON CONFLICT (id) DO UPDATE SET coupon = 1 was aborted: ERROR: column \"coupon\" does not exist";
        assert_eq!(table(record), t("", "t_order"));
        assert_eq!(
            table("sync failed: insert into t_admin is what we wanted; ERROR: column \"c\" does not exist"),
            None
        );
        assert_eq!(table("Batch entry x INSERT INTO t (a) VALUES (1)"), None, "no entry number");
        assert_eq!(table("### SQL: select * from t_user"), None);
        assert_eq!(table("### SQL: insert into \"unterminated"), None);
    }

    #[test]
    fn different_tables_are_for_a_person_to_place() {
        let record = "Batch entry 0 INSERT INTO t_a (x) VALUES (1) was aborted\n### SQL: update t_b set x = 1";
        assert_eq!(table(record), None);
        let same =
            "Batch entry 0 INSERT INTO t_a (x) VALUES (1) was aborted\nBatch entry 1 insert into T_A (x) values (2)";
        assert_eq!(table(same), t("", "t_a"));
    }
}
