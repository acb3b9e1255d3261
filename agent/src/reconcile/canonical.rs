//! The canonical form of a value, computed in each database so that the
//! same row hashes the same in MySQL and in PostgreSQL.
//!
//! A column is compared only where the pair of types (MySQL's, the
//! target's) has one exact text form on both sides; any other pair is named
//! and left out, never compared approximately. The forms, for a non-NULL
//! value:
//!
//! | MySQL | PostgreSQL | form |
//! |---|---|---|
//! | any integer, `year` | `smallint`, `integer`, `bigint`, `numeric(p,0)` | decimal digits |
//! | `tinyint(1)`, `bit(1)` | `boolean` | `1` / `0` |
//! | `bit(n)` | `bit(n)` | `n` binary digits |
//! | `decimal(p,s)` | `numeric(q,s)`, the same scale | digits with `s` decimals |
//! | `char`, `varchar`, `*text`, `enum`, `set` | `text`, `character varying`, (`character` only for `char`) | the UTF-8 bytes |
//! | `binary`, `varbinary`, `*blob` | `bytea` | upper-case hex |
//! | `date` | `date` | `YYYY-MM-DD` |
//! | `datetime(n)`, `timestamp(n)` | `timestamp(m) without time zone`, m ≥ n | `YYYY-MM-DD HH:MM:SS.ffffff` |
//! | `time(n)` | `time(m) without time zone`, m ≥ n | `HH:MM:SS.ffffff` |
//!
//! Floating point (`float`, `double`: printed differently on each side),
//! `json` (key order and spacing are not kept by `jsonb`), time zones and
//! spatial types are left out.
//!
//! A row is its fields joined by `|`. A field of a form whose text has a
//! fixed alphabet (digits, signs, `.`, `:`, ` `, upper-case hex) is that
//! text, `N` for NULL; a text field is `<byte length>:<text>`, `N` for
//! NULL. So NULL, the empty string and `"N"` differ, and no two rows of
//! different fields join to the same text. Where both sides print a time
//! at the same precision (0, 3 or 6 digits) it is used as printed, which
//! saves a formatting call per row; otherwise both are formatted to
//! microseconds.

use crate::clients::mysql::ColumnType;
use crate::types::SqlIdent;

/// How a column's values are written as canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Integer,
    /// MySQL `tinyint(1)` or `bit(1)` against a PostgreSQL `boolean`.
    Boolean {
        mysql_bit: bool,
    },
    Bits(u32),
    Decimal,
    /// `convert`: the MySQL column is not in UTF-8 and is converted;
    /// `padded`: the target's `character(n)`, read without its padding.
    Text {
        convert: bool,
        padded: bool,
    },
    Binary,
    Date,
    /// `digits`: both sides print this many (0, 3 or 6) as they are;
    /// `None`: formatted to microseconds on both.
    DateTime {
        digits: Option<u32>,
    },
    Time {
        digits: Option<u32>,
    },
}

impl Form {
    fn fixed_alphabet(self) -> bool {
        !matches!(self, Form::Text { .. })
    }
}

/// A compared column and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub col: SqlIdent,
    pub form: Form,
    /// Either side may hold NULL in it.
    pub nullable: bool,
}

/// A MySQL column as the catalogue describes it.
#[derive(Debug, Clone)]
pub struct MysqlColumn {
    pub name: String,
    /// `COLUMN_TYPE`, e.g. `int(10) unsigned`, `decimal(12,2)`.
    pub column_type: String,
    pub nullable: bool,
    /// `CHARACTER_SET_NAME` of a text column.
    pub charset: Option<String>,
}

/// A PostgreSQL column: `format_type` of its type.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    pub type_sql: String,
    pub nullable: bool,
}

/// Whether a MySQL integer key fits a signed 64-bit range (range
/// segments compute with it).
pub fn mysql_signed_integer(column_type: &str) -> bool {
    let ColumnType { base, unsigned, .. } = ColumnType::parse(column_type);
    match base.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" => true,
        "bigint" => !unsigned,
        _ => false,
    }
}

/// The precision of a PostgreSQL time type: `timestamp(3) without time
/// zone` → 3; none written means 6.
fn pg_time_precision(pg: &str, prefix: &str) -> Option<u32> {
    let rest = pg.strip_prefix(prefix)?;
    let (precision, rest) = match rest.strip_prefix('(') {
        Some(r) => {
            let (n, r) = r.split_once(')')?;
            (n.parse().ok()?, r)
        }
        None => (6, rest),
    };
    (rest == " without time zone").then_some(precision)
}

/// The form both sides share, or why the pair cannot be compared exactly.
pub fn form(mysql: &MysqlColumn, pg: &PgColumn) -> Result<Form, String> {
    let ColumnType { base, nums, .. } = ColumnType::parse(&mysql.column_type);
    let pg_ty = pg.type_sql.as_str();
    let pg_integer =
        matches!(pg_ty, "smallint" | "integer" | "bigint") || (pg_ty.starts_with("numeric(") && pg_ty.ends_with(",0)"));
    let pg_text = pg_ty == "text" || pg_ty.starts_with("character varying");
    let mysql_precision = nums.first().copied().unwrap_or(0);
    let utf8 = mysql.charset.as_deref().is_none_or(|c| c.starts_with("utf8"));
    let text = Form::Text { convert: !utf8, padded: pg_ty.starts_with("character(") };
    // Printed as they are when both keep the same digits of seconds.
    let same_digits = |p: u32| (p == mysql_precision && matches!(p, 0 | 3 | 6)).then_some(p);
    let refuse = || Err(format!("MySQL {} against PostgreSQL {pg_ty}: no exact common form", mysql.column_type));
    let form = match base.as_str() {
        "tinyint" if pg_ty == "boolean" && nums == [1] => Form::Boolean { mysql_bit: false },
        "bit" if pg_ty == "boolean" && nums.first().copied().unwrap_or(1) == 1 => Form::Boolean { mysql_bit: true },
        "bit" if pg_ty == format!("bit({})", nums.first().copied().unwrap_or(1)) => {
            Form::Bits(nums.first().copied().unwrap_or(1))
        }
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" if pg_integer => Form::Integer,
        "decimal" | "numeric" | "dec" | "fixed" => {
            let scale = nums.get(1).copied().unwrap_or(0);
            let pg_scale = pg_ty
                .strip_prefix("numeric(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(','))
                .and_then(|(_, s)| s.parse::<u32>().ok());
            match pg_scale {
                Some(s) if s == scale && scale == 0 => Form::Integer,
                Some(s) if s == scale => Form::Decimal,
                _ => return refuse(),
            }
        }
        "char" if pg_text || pg_ty.starts_with("character(") => text,
        "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" if pg_text => text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" if pg_ty == "bytea" => Form::Binary,
        "date" if pg_ty == "date" => Form::Date,
        "datetime" | "timestamp" => match pg_time_precision(pg_ty, "timestamp") {
            Some(p) if p >= mysql_precision => Form::DateTime { digits: same_digits(p) },
            Some(p) => {
                return Err(format!(
                    "MySQL {} is kept to {p} digits of seconds in PostgreSQL {pg_ty}: values would differ by rounding",
                    mysql.column_type
                ))
            }
            None => return refuse(),
        },
        "time" => match pg_time_precision(pg_ty, "time") {
            Some(p) if p >= mysql_precision => Form::Time { digits: same_digits(p) },
            _ => return refuse(),
        },
        "float" | "double" | "real" => {
            return Err(format!("{} is floating point: the two databases print it differently", mysql.column_type))
        }
        "json" => return Err("json: jsonb keeps neither key order nor spacing".into()),
        _ => return refuse(),
    };
    Ok(form)
}

/// The field for a column both sides have, or why it cannot be compared.
pub fn field(col: SqlIdent, mysql: &MysqlColumn, pg: &PgColumn) -> Result<Field, String> {
    Ok(Field { col, form: form(mysql, pg)?, nullable: mysql.nullable || pg.nullable })
}

/// The two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Postgres,
}

impl Dialect {
    pub fn ident(self, id: &SqlIdent) -> String {
        match self {
            Dialect::Mysql => format!("`{}`", id.as_str()),
            Dialect::Postgres => id.quoted(),
        }
    }

    /// The canonical text of a non-NULL value of `col` (no length prefix).
    pub fn value(self, col: &SqlIdent, form: Form) -> String {
        let c = self.ident(col);
        match (self, form) {
            (Dialect::Mysql, Form::Integer | Form::Decimal) => format!("CAST({c} AS CHAR)"),
            (Dialect::Mysql, Form::Boolean { mysql_bit: true }) => format!("CAST({c} + 0 AS CHAR)"),
            (Dialect::Mysql, Form::Boolean { mysql_bit: false }) => format!("CAST({c} AS CHAR)"),
            (Dialect::Mysql, Form::Bits(n)) => format!("LPAD(BIN({c} + 0), {n}, '0')"),
            (Dialect::Mysql, Form::Text { convert: true, .. }) => format!("CONVERT({c} USING utf8mb4)"),
            (Dialect::Mysql, Form::Text { convert: false, .. }) => c,
            (Dialect::Mysql, Form::Binary) => format!("HEX({c})"),
            (Dialect::Mysql, Form::Date) => format!("DATE_FORMAT({c}, '%Y-%m-%d')"),
            (Dialect::Mysql, Form::DateTime { digits: None }) => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
            (Dialect::Mysql, Form::Time { digits: None }) => format!("TIME_FORMAT({c}, '%H:%i:%s.%f')"),
            (Dialect::Mysql, Form::DateTime { .. } | Form::Time { .. }) => format!("CAST({c} AS CHAR)"),
            (Dialect::Postgres, Form::Boolean { .. }) => format!("CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END"),
            (Dialect::Postgres, Form::Binary) => format!("upper(encode({c}, 'hex'))"),
            (Dialect::Postgres, Form::Date) => format!("to_char({c}, 'YYYY-MM-DD')"),
            (Dialect::Postgres, Form::DateTime { digits }) => {
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS{}')", fraction(digits))
            }
            (Dialect::Postgres, Form::Time { digits }) => format!("to_char({c}, 'HH24:MI:SS{}')", fraction(digits)),
            (Dialect::Postgres, Form::Text { padded: false, .. }) => c,
            (Dialect::Postgres, Form::Integer | Form::Decimal | Form::Bits(_) | Form::Text { .. }) => {
                format!("{c}::text")
            }
        }
    }

    /// One field of the canonical row.
    fn field(self, f: &Field) -> String {
        let c = self.ident(&f.col);
        let v = self.value(&f.col, f.form);
        let prefixed = match (self, f.form.fixed_alphabet()) {
            (_, true) => v,
            (Dialect::Mysql, false) => format!("CONCAT(LENGTH({v}), ':', {v})"),
            (Dialect::Postgres, false) => format!("octet_length({v})::text || ':' || {v}"),
        };
        match (self, f.nullable) {
            (_, false) => prefixed,
            (Dialect::Mysql, true) if f.form.fixed_alphabet() => format!("IFNULL({prefixed}, 'N')"),
            (Dialect::Postgres, true) if f.form.fixed_alphabet() => format!("coalesce({prefixed}, 'N')"),
            (Dialect::Mysql, true) => format!("IF({c} IS NULL, 'N', {prefixed})"),
            (Dialect::Postgres, true) => format!("CASE WHEN {c} IS NULL THEN 'N' ELSE {prefixed} END"),
        }
    }

    /// A 60-bit non-negative integer from the MD5 of the fields joined by
    /// `|`: the same number on both sides.
    pub fn hash(self, fields: &[Field]) -> String {
        let fields: Vec<String> = fields.iter().map(|f| self.field(f)).collect();
        match self {
            Dialect::Mysql => {
                format!("CAST(CONV(SUBSTRING(MD5(CONCAT_WS('|', {})), 1, 15), 16, 10) AS UNSIGNED)", fields.join(", "))
            }
            Dialect::Postgres => {
                format!("('x' || substr(md5(concat_ws('|', {})), 1, 15))::bit(60)::bigint", fields.join(", "))
            }
        }
    }
}

/// `to_char`'s fraction of seconds for `digits` (None: microseconds).
fn fraction(digits: Option<u32>) -> &'static str {
    match digits {
        Some(0) => "",
        Some(3) => ".MS",
        _ => ".US",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(mysql: &str, pg: &str) -> Result<Form, String> {
        form(
            &MysqlColumn { name: "c".into(), column_type: mysql.into(), nullable: true, charset: None },
            &PgColumn { name: "c".into(), type_sql: pg.into(), nullable: true },
        )
    }

    #[test]
    fn every_pair_the_c1_mapping_makes_is_compared() {
        for (mysql, pg, want) in [
            ("tinyint(1)", "smallint", Form::Integer),
            ("tinyint(1)", "boolean", Form::Boolean { mysql_bit: false }),
            ("int(10) unsigned", "bigint", Form::Integer),
            ("bigint(20) unsigned", "numeric(20,0)", Form::Integer),
            ("decimal(12,2)", "numeric(12,2)", Form::Decimal),
            ("decimal(10,0)", "numeric(10,0)", Form::Integer),
            ("bit(1)", "boolean", Form::Boolean { mysql_bit: true }),
            ("bit(5)", "bit(5)", Form::Bits(5)),
            ("char(32)", "character(32)", Form::Text { convert: false, padded: true }),
            ("varchar(64)", "character varying(64)", Form::Text { convert: false, padded: false }),
            ("enum('a','b')", "text", Form::Text { convert: false, padded: false }),
            ("longblob", "bytea", Form::Binary),
            ("date", "date", Form::Date),
            ("year(4)", "smallint", Form::Integer),
            ("datetime(3)", "timestamp(3) without time zone", Form::DateTime { digits: Some(3) }),
            ("datetime(3)", "timestamp(6) without time zone", Form::DateTime { digits: None }),
            ("datetime(2)", "timestamp(2) without time zone", Form::DateTime { digits: None }),
            ("datetime", "timestamp without time zone", Form::DateTime { digits: None }),
            ("datetime", "timestamp(0) without time zone", Form::DateTime { digits: Some(0) }),
            ("timestamp(6)", "timestamp(6) without time zone", Form::DateTime { digits: Some(6) }),
            ("time", "time without time zone", Form::Time { digits: None }),
        ] {
            assert_eq!(f(mysql, pg), Ok(want), "{mysql} / {pg}");
        }
    }

    #[test]
    fn pairs_without_one_exact_form_are_left_out_with_a_reason() {
        for (mysql, pg) in [
            ("double", "double precision"),
            ("float", "real"),
            ("json", "jsonb"),
            ("decimal(12,2)", "numeric(12,4)"),
            ("decimal(12,2)", "numeric"),
            ("datetime(6)", "timestamp(3) without time zone"),
            ("datetime", "timestamp with time zone"),
            ("varchar(10)", "character(10)"),
            ("int(11)", "text"),
            ("bigint(20)", "numeric"),
            ("varchar(10)", "integer"),
            ("geometry", "bytea"),
        ] {
            let why = f(mysql, pg).unwrap_err();
            assert!(!why.is_empty(), "{mysql} / {pg}");
        }
    }

    #[test]
    fn fields_keep_null_apart_from_empty_and_length_prefix_text() {
        let f = |col: &str, form, nullable| Field { col: SqlIdent::parse(col).unwrap(), form, nullable };
        let fields = [
            f("id", Form::Integer, false),
            f("note", Form::Text { convert: false, padded: false }, true),
            f("at", Form::DateTime { digits: Some(3) }, true),
        ];
        assert_eq!(
            Dialect::Mysql.hash(&fields),
            "CAST(CONV(SUBSTRING(MD5(CONCAT_WS('|', CAST(`id` AS CHAR), IF(`note` IS NULL, 'N', CONCAT(LENGTH(`note`), ':', `note`)), \
             IFNULL(CAST(`at` AS CHAR), 'N'))), 1, 15), 16, 10) AS UNSIGNED)"
        );
        assert_eq!(
            Dialect::Postgres.hash(&fields),
            "('x' || substr(md5(concat_ws('|', \"id\"::text, CASE WHEN \"note\" IS NULL THEN 'N' ELSE octet_length(\"note\")::text || ':' || \"note\" END, \
             coalesce(to_char(\"at\", 'YYYY-MM-DD HH24:MI:SS.MS'), 'N'))), 1, 15))::bit(60)::bigint"
        );
    }
}
