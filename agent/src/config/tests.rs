//! The configuration's checks: what loads, and the clear errors for what does not.

use super::*;

const MINIMAL: &str = "state_dir = \"state\"\nrule_dirs = [\"rules\"]\n";

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = format!("{MINIMAL}[limits]\ncooldown_sec = 5\n");
    let err = Config::parse(&text, Path::new("/etc/pm.toml"), Path::new("/etc")).unwrap_err().to_string();
    assert!(err.contains("/etc/pm.toml"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("cooldown_sec"), "{err}");
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let text = format!("{MINIMAL}[sources.kafka_server]\npath = \"logs/server.log\"\n");
    let c = Config::parse(&text, Path::new("/x/pm.toml"), Path::new("/x")).unwrap();
    assert_eq!(c.sources["kafka_server"].path, Path::new("/x/logs/server.log"));
    assert_eq!(c.state_dir, Path::new("/x/state"));
}

#[test]
fn service_without_process_match_is_refused() {
    let text = format!("{MINIMAL}[services.kafka]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={{}}\n");
    let err = Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap_err().to_string();
    assert!(err.contains("services.kafka.process"), "{err}");
}

#[test]
fn canal_ha_needs_a_host_name_zookeeper_can_hold() {
    let canal = "[services.canal]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}\n\
                 [zookeeper]\nconnect=\"127.0.0.1:2181\"\n[mysql.src]\nhost=\"127.0.0.1\"\nuser=\"u\"\nschemas=[]\n\
                 [canal]\nservice=\"canal\"\nha=true\n[canal.destinations.d]\nmysql=\"src\"\n";
    for bad in ["../members", "a/b", ""] {
        let text = format!("host_name = {bad:?}\n{MINIMAL}{canal}");
        let err = Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("ha = true") && err.contains("host_name"), "{bad:?}: {err}");
    }
    let text = format!("host_name = \"canal-a.example\"\n{MINIMAL}{canal}");
    Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap();
}

#[test]
fn shipped_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["packaging/pipemedic.toml", "examples/pipemedic.toml"] {
        let c = Config::load(&root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for name in [
            "consumer_info",
            "consumer_error",
            "kafka_server",
            "kafka_controller",
            "canal",
            "canal_instance",
            "monitor",
        ] {
            assert!(c.source(name).is_some(), "{file} names source {name}");
        }
    }
}

#[test]
fn packaged_mail_and_approval_example_parses_when_uncommented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("packaging/pipemedic.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Config::parse(&uncommented, Path::new("pipemedic.toml"), root).unwrap();
    assert_eq!(c.approval.as_ref().unwrap().approvers.len(), 2);
    assert_eq!(c.mail.as_ref().unwrap().port(), 587);
    assert_eq!(c.host_name(), "pipeline-01");
}

/// Each section refuses what it cannot use on its own, and the root what
/// does not fit between sections; every message names the file and section.
#[test]
fn every_check_names_its_section() {
    let svc = "[services.kafka]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}\n";
    let cases: Vec<(String, &str)> = vec![
        ("[limits]\nrule_max_ms = 0\n".into(), "[limits]"),
        ("[limits]\nmax_record_bytes = 10\n".into(), "[limits]"),
        ("[services.kafka]\nstart=[]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}\n".into(), "[services.kafka]"),
        (format!("{svc}[services.kafka.up]\nlog_file=\"x\"\n"), "[services.kafka.up]"),
        ("[mail]\nserver=\"mail.example.com\"\nfrom=\"pm@example.com\"\nsecurity=\"plain\"\n".into(), "[mail]"),
        ("[mail]\nserver=\"127.0.0.1\"\nfrom=\"not an address\"\n".into(), "[mail] from"),
        (
            "[approval]\napprovers=[\"a@example.com\"]\npublic_url=\"https://pm.example.com\"\nlisten=\"127.0.0.1:0\"\n".into(),
            "[approval] needs a [mail]",
        ),
        ("[mysql.src]\nhost=\"127.0.0.1\"\nuser=\"u\"\nschemas=[\"a;b\"]\n".into(), "[mysql.src] schemas"),
        ("[postgres.pg]\nhost=\"127.0.0.1\"\nuser=\"u\"\ndbname=\"d\"\nschema=\"a b\"\n".into(), "[postgres.pg] schema"),
        (
            "[zookeeper]\nconnect=\"127.0.0.1:2181\"\n[kafka]\nbootstrap_servers=\"127.0.0.1:9092\"\n[kafka.cluster]\nbroker_id=1\nservice=\"nope\"\n".into(),
            "[kafka.cluster] service",
        ),
        ("[digest]\nat=\"07:30\"\n".into(), "[digest] needs a [mail]"),
        ("[heartbeat]\nsource=\"monitor\"\npattern=\"x\"\nexpected=[\"a\"]\n".into(), "[heartbeat] source"),
        (
            "[sources.consumer_info]\npath=\"i.log\"\n[heartbeat]\nsource=\"consumer_info\"\npattern=\"beat (?<src>x)\"\nexpected=[\"a\"]\n"
                .into(),
            "[heartbeat] pattern needs a named group (?<source>",
        ),
        (
            "[sources.consumer_info]\npath=\"i.log\"\n[heartbeat]\nsource=\"consumer_info\"\npattern=\"beat (\"\nexpected=[\"a\"]\n"
                .into(),
            "[heartbeat] pattern: ",
        ),
    ];
    for (sections, says) in &cases {
        let text = format!("{MINIMAL}{sections}");
        let err = match Config::parse(&text, Path::new("c.toml"), Path::new(".")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("config c.toml: ") && err.contains(says), "expected {says:?}:\n{text}\n{err}");
    }
}
