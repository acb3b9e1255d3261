//! Approval by email, end to end: a real SMTP server capturing the mail, the
//! agent's real HTTP endpoint, and the real daemon deciding and applying.

mod common;

use common::{Host, Options, SERVER_PROPERTIES};

const ONE: &[&str] = &["ops1@example.com"];
const TWO: &[&str] = &["ops1@example.com", "ops2@example.com"];

fn host(approvers: &[&'static str]) -> Host {
    Host::new(Options { approvers: approvers.to_vec(), ..Options::default() })
}

fn ask(host: &Host, hours: u32) {
    host.append("logs/server.log", &format!("[2026-11-25 10:00:00,000] WARN SET retention={hours}\n"));
}

fn approvals_of_kind(host: &Host, kind: &str) -> Vec<serde_json::Value> {
    host.audit_of_kind(kind)
}

#[test]
fn approve_link_applies_the_plan_once_and_a_second_post_is_refused() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 72);
    let d = host.wait_decision("set_retention", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    let mails = host.wait_mails(1);
    if std::env::var_os("PIPEMEDIC_SHOW_MAIL").is_some() {
        eprintln!("{}", mails[0].text);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(host.mails().len(), 1, "exactly one mail for one approver");
    let mail = &mails[0];
    assert_eq!(mail.to, ["ops1@example.com"]);
    assert!(mail.subject().contains("approve K3"), "{}", mail.subject());
    assert!(
        mail.text.contains("-log.retention.hours=168") && mail.text.contains("+log.retention.hours=72"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("SET retention=72"), "the triggering record is in the mail");

    let (approve, _) = mail.links();
    let (status, page) = host.get(&approve);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("+log.retention.hours=72") && page.contains("Approve this plan"));
    let (status, _) = host.get(&approve);
    assert_eq!(status, 200, "opening the link again changes nothing");
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES, "a GET never applies");

    let (status, result) = host.press(&page);
    assert_eq!(status, 200, "{result}");
    let applied = host.wait_decision("set_retention", 2);
    assert_eq!(applied["decision"], "applied", "{applied:#}");
    assert!(applied["reason"].as_str().unwrap().contains("approved by ops1@example.com"));
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES.replace("=168", "=72"));

    let (status, again) = host.press(&page);
    assert_eq!(status, 403, "{again}");
    assert!(again.contains("already decided"), "{again}");
    assert_eq!(host.decisions("set_retention").len(), 2, "applied once");
    assert_eq!(std::fs::read_dir(host.path("state/backups")).unwrap().count(), 1);
    host.stop_agent();
}

#[test]
fn deny_link_never_applies() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 24);
    let mail = host.wait_mails(1).remove(0);
    let (_, deny) = mail.links();
    let (_, page) = host.get(&deny);
    assert!(page.contains("Deny this plan"));
    let (status, result) = host.press(&page);
    assert_eq!(status, 200, "{result}");
    assert!(result.contains("Denied"));
    host.wait_until("the denial in the audit", || !approvals_of_kind(&host, "approval-decided").is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES);
    assert_eq!(host.decisions("set_retention").len(), 1);
    host.stop_agent();
}

#[test]
fn expired_approval_is_never_applied() {
    let mut host = Host::new(Options { approvers: ONE.to_vec(), expiry_secs: 1, ..Options::default() });
    host.start_agent();
    ask(&host, 12);
    let mail = host.wait_mails(1).remove(0);
    let (approve, _) = mail.links();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, page) = host.get(&approve);
    assert_eq!(status, 403);
    assert!(page.contains("expired"), "{page}");
    host.wait_until("the approval to expire", || !approvals_of_kind(&host, "approval-expired").is_empty());
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES);
    host.stop_agent();
}

#[test]
fn altered_and_foreign_tokens_are_refused_and_audited() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 48);
    host.wait_mails(1);
    ask(&host, 96);
    let mails = host.wait_mails(2);
    let (first, _) = mails[0].links();
    let (second, _) = mails[1].links();

    // A token changed by one digit.
    let last = first.chars().last().unwrap();
    let altered = format!("{}{}", &first[..first.len() - 1], if last == '0' { '1' } else { '0' });
    let (status, page) = host.get(&altered);
    assert_eq!(status, 403);
    assert!(page.contains("not valid"), "{page}");
    // The other plan's token on this approval.
    let token = |u: &str| u.split("token=").nth(1).unwrap().to_string();
    let foreign = first.replace(&token(&first), &token(&second));
    assert_eq!(host.get(&foreign).0, 403);
    // Someone else's approval link with the decision flipped.
    assert_eq!(host.get(&first.replace("decision=approve", "decision=deny")).0, 403);
    // A forged POST straight to the endpoint.
    let id = first.split("/approvals/").nth(1).unwrap().split('?').next().unwrap().to_string();
    let (status, _) = pipemedic::approval::web::request(
        host.http.unwrap(),
        "POST",
        &format!("/approvals/{id}"),
        Some(&[("decision", "approve"), ("approver", "ops1@example.com"), ("exp", "1"), ("token", "00")]),
    )
    .unwrap();
    assert_eq!(status, 403);
    host.wait_until("refusals audited", || approvals_of_kind(&host, "approval-refused").len() >= 4);
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES);
    host.stop_agent();
}

#[test]
fn state_changed_after_the_mail_supersedes_and_asks_again() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 36);
    let mail = host.wait_mails(1).remove(0);
    // Someone edits the file between the mail and the approval.
    let edited = "broker.id=1\nlog.retention.hours=100\n";
    std::fs::write(host.path("server.properties"), edited).unwrap();
    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    let (status, _) = host.press(&page);
    assert_eq!(status, 200);
    host.wait_until("superseded", || !approvals_of_kind(&host, "approval-superseded").is_empty());
    assert_eq!(host.read("server.properties"), edited, "the stale plan was not applied");
    let mails = host.wait_mails(2);
    assert!(
        mails[1].text.contains("-log.retention.hours=100") && mails[1].text.contains("+log.retention.hours=36"),
        "{}",
        mails[1].text
    );
    let superseded = &approvals_of_kind(&host, "approval-superseded")[0];
    assert!(superseded["reason"].as_str().unwrap().contains("asked again as approval"), "{superseded:#}");

    // The new request works.
    let (approve, _) = mails[1].links();
    let (_, page) = host.get(&approve);
    host.press(&page);
    host.wait_until("the new plan applied", || host.read("server.properties").contains("=36"));
    host.stop_agent();
}

#[test]
fn approval_survives_an_agent_restart() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 60);
    let mail = host.wait_mails(1).remove(0);
    host.stop_agent();
    host.start_agent();
    let (approve, _) = mail.links();
    let (status, page) = host.get(&approve);
    assert_eq!(status, 200, "{page}");
    host.press(&page);
    let d = host.wait_decision("set_retention", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(host.read("server.properties").contains("=60"));
    host.stop_agent();
}

#[test]
fn data_loss_needs_two_different_approvers() {
    let mut host = host(TWO);
    host.start_agent();
    host.append("logs/server.log", "[2026-11-25 10:00:00,000] WARN SET retention=1 DATALOSS\n");
    let mails = host.wait_mails(2);
    assert!(mails.iter().all(|m| m.text.contains("THIS PLAN LOSES DATA")));
    let by = |who: &str| mails.iter().find(|m| m.to == [who.to_string()]).unwrap().links().0;
    let (_, page1) = host.get(&by("ops1@example.com"));
    let (status, result) = host.press(&page1);
    assert_eq!(status, 200);
    assert!(result.contains("needs 2 different approvers"), "{result}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES, "one approver is not enough");
    let (status, again) = host.press(&page1);
    assert_eq!(status, 403, "the same approver twice does not count: {again}");
    let (_, page2) = host.get(&by("ops2@example.com"));
    assert!(page2.contains("ops1@example.com"), "the page shows who approved so far");
    assert_eq!(host.press(&page2).0, 200);
    host.wait_until("applied after the second approver", || host.read("server.properties").contains("=1\n"));
    host.stop_agent();
}

#[test]
fn dry_run_mail_is_marked_and_approving_applies_nothing() {
    let mut host = Host::new(Options { approvers: ONE.to_vec(), dry_run: true, ..Options::default() });
    host.start_agent();
    ask(&host, 30);
    let mail = host.wait_mails(1).remove(0);
    assert!(mail.subject().contains("DRY RUN"), "{}", mail.subject());
    assert!(mail.text.contains("DRY RUN"));
    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    assert!(page.contains("DRY RUN"));
    let (_, result) = host.press(&page);
    assert!(result.contains("DRY RUN"), "{result}");
    let d = host.wait_decision("set_retention", 2);
    assert_eq!(d["decision"], "dry-run");
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES);
    host.stop_agent();
}

#[test]
fn smtp_down_keeps_the_approval_pending_and_retries() {
    let mut host = Host::new(Options { approvers: ONE.to_vec(), smtp_up: false, ..Options::default() });
    host.start_agent();
    ask(&host, 20);
    host.wait_until("a failed send in the audit", || !approvals_of_kind(&host, "mail-failed").is_empty());
    assert_eq!(host.decisions("set_retention")[0]["decision"], "awaiting-approval");
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES);
    host.smtp.as_mut().unwrap().start();
    let mail = host.wait_mails(1).remove(0);
    host.wait_until("the send in the audit", || !approvals_of_kind(&host, "mail-sent").is_empty());
    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    host.press(&page);
    host.wait_until("applied after the late mail", || host.read("server.properties").contains("=20"));
    host.stop_agent();
}

#[test]
fn local_root_approves_from_the_cli() {
    let mut host = host(ONE);
    host.start_agent();
    ask(&host, 84);
    host.wait_mails(1);
    let config = host.config();
    let out = std::process::Command::new(common::BIN)
        .args(["approvals", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let id = listing.split_whitespace().next().unwrap().to_string();
    assert!(listing.contains("pending") && listing.contains("Set log.retention.hours to 84"), "{listing}");
    let out = std::process::Command::new(common::BIN)
        .args(["approve", "--config", config.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    host.wait_until("applied", || host.read("server.properties").contains("=84"));
    let decided = &approvals_of_kind(&host, "approval-decided")[0];
    assert_eq!(decided["via"], "cli");
    assert!(decided["who"].as_str().unwrap().starts_with("local:root"), "{decided:#}");
    host.stop_agent();
}

#[test]
fn notify_mails_the_list_once_per_finding() {
    let mut host = Host::new(Options { approvers: ONE.to_vec(), cooldown_secs: 0, ..Options::default() });
    std::fs::write(
        host.path("rules.d/tell.rhai"),
        "// Test rule: tell a person.\nfn meta() { #{ runbook: [\"C4\"], sources: [\"kafka_server\"], signatures: #{ tell: `TELL (?<what>[A-Za-z]+)` } } }\nfn plan(ev, ctx) { #{ summary: \"tell\", steps: [notify(`bean ${ev.captures.what} cannot be injected`)] } }\nfn tests() { [] }\n",
    )
    .unwrap();
    host.start_agent();
    host.append("logs/server.log", "[2026-11-25 10:00:00,000] WARN TELL orderBo\n");
    let first = host.wait_decision("tell", 1);
    assert_eq!(first["decision"], "applied", "{first:#}");
    let mail = host.wait_mails(1).remove(0);
    assert_eq!(mail.to, ["oncall@example.com"]);
    assert!(mail.subject().contains("bean orderBo cannot be injected"), "{}", mail.subject());
    host.append("logs/server.log", "[2026-11-25 10:00:01,000] WARN TELL orderBo\n");
    let second = host.wait_decision("tell", 2);
    assert!(second["steps"][0]["result"].as_str().unwrap().contains("already mailed"), "{second:#}");
    host.append("logs/server.log", "[2026-11-25 10:00:02,000] WARN TELL userBo\n");
    host.wait_decision("tell", 3);
    host.wait_mails(2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(host.mails().len(), 2, "one mail per distinct finding");
    host.stop_agent();
}

/// A rule may put record text into its summary; the record is the log's,
/// and the log is anyone's who can make the service print a line.
const ECHO_RULE: &str = r#"fn meta() {
    #{ runbook: ["K3"], sources: ["kafka_server"], signatures: #{ echo_retention: `ECHO retention=(?<hours>[0-9]+)` } }
}
fn plan(ev, ctx) {
    #{ summary: `Set retention as asked: ${ev.text}`, risk: "dangerous",
       steps: [property_set("server", "log.retention.hours", ev.captures.hours)] }
}
fn tests() { [] }
"#;

#[test]
fn escape_sequences_in_a_summary_reach_neither_the_terminal_nor_the_subject() {
    let mut host = host(ONE);
    std::fs::write(host.path("rules.d/echo_retention.rhai"), ECHO_RULE).unwrap();
    host.start_agent();
    host.append(
        "logs/server.log",
        "[2026-11-25 10:00:00,000] WARN ECHO retention=12 \x1b]0;owned\x07\x1b[2J\rSubject: forged\x1b[1A\u{202e}\n",
    );
    let mail = host.wait_mails(1).remove(0);
    let subject = mail.subject();
    assert!(subject.contains("\\u{1b}]0;owned\\u{7}"), "the escape is shown, not sent: {subject:?}");
    assert!(!subject.contains(['\x1b', '\x07', '\r', '\n', '\u{202e}']), "{subject:?}");
    let headers = mail.text.split("\n\n").next().unwrap();
    assert!(!headers.contains("\nSubject: forged"), "{headers}");
    assert!(!mail.text.contains('\x1b') && !mail.text.contains('\x07'), "{:?}", mail.text);

    let out = std::process::Command::new(common::BIN)
        .args(["approvals", "--config", host.config().to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listing.contains("Set retention as asked"), "{listing}");
    for c in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(!listing.contains(c), "{c:?} printed raw: {listing:?}");
    }
    assert_eq!(listing.lines().count(), 3, "one approval, three lines: {listing:?}");
    host.stop_agent();
}
