//! Runbook C4 and C6: start-up failures of the consumer that need a person.
//! C4 is explained, never changed; C6 says which environment the deployed
//! build points at and offers the graceful Tomcat stop for approval.

mod common;

use common::{Host, Options};

fn host() -> Host {
    let extra = "\n[consumer_build]\nproperties_file = \"deployed/jdbc.properties\"\nurl_key = \"jdbc.url\"\nenvironment = \"prd\"\nexpected_url_contains = \"10.98.5.20\"\n";
    let host = Host::new(Options { approvers: vec!["ops1@example.com"], extra: extra.into(), ..Options::default() });
    std::fs::create_dir_all(host.path("deployed")).unwrap();
    std::fs::write(
        host.path("deployed/jdbc.properties"),
        "jdbc.driver=org.postgresql.Driver\njdbc.url=jdbc:postgresql://10.98.9.7:5432/trade_ix\n",
    )
    .unwrap();
    host
}

#[test]
fn c4_missing_bean_and_class_are_explained_by_mail() {
    let mut host = host();
    host.start_agent();
    host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [localhost-startStop-1] ERROR o.s.web.context.ContextLoader - Context initialization failed\n\
         org.springframework.beans.factory.BeanCreationException: Error creating bean with name 'orderSyncService': Injection of autowired dependencies failed; nested exception is org.springframework.beans.factory.NoSuchBeanDefinitionException: No qualifying bean of type 'com.goldoffice.bo.OrderBo' available\n\
         \tat org.springframework.beans.factory.support.AbstractAutowireCapableBeanFactory.populateBean(AbstractAutowireCapableBeanFactory.java:1268)\n\
         2026-11-25 10:00:01.001 [localhost-startStop-1] ERROR o.s.web.context.ContextLoader - Context initialization failed\n\
         java.lang.NoClassDefFoundError: com/goldoffice/bo/UserBo\n\
         \tat java.lang.Class.forName0(Native Method)\n",
    );
    let bean = host.wait_decision("c4_startup_wiring", 1);
    let class = host.wait_decision("c4_startup_wiring", 2);
    assert_eq!(bean["decision"], "applied");
    assert_eq!(class["decision"], "applied");
    let mails = host.wait_mails(2);
    let text: Vec<&str> = mails.iter().map(|m| m.text.as_str()).collect();
    assert!(
        text.iter().any(|t| t.contains("no bean of type com.goldoffice.bo.OrderBo")
            && t.contains("applicationContext-data-sync.xml")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("class com.goldoffice.bo.UserBo was not found") && t.contains("pom.xml")),
        "{text:#?}"
    );
    assert!(mails.iter().all(|m| m.to == ["oncall@example.com"]));
    host.stop_agent();
}

#[test]
fn c6_wrong_build_is_reported_and_the_graceful_stop_waits_for_approval() {
    let mut host = host();
    host.start_service("consumer", "logs/info.log");
    host.start_agent();
    host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [localhost-startStop-1] ERROR com.alibaba.druid.pool.DruidDataSource - init datasource error, url: jdbc:postgresql://10.98.9.7:5432/trade_ix\n\
         org.postgresql.util.PSQLException: Connection to 10.98.9.7:5432 refused. Check that the hostname and port are correct.\n",
    );
    let check = host.wait_decision("c6_pool_init", 1);
    let stop = host.wait_decision("c6_pool_init", 2);
    assert_eq!(check["decision"], "applied", "{check:#}");
    assert_eq!(stop["decision"], "awaiting-approval", "{stop:#}");
    let mails = host.wait_mails(2);
    let finding = mails.iter().find(|m| m.to == ["oncall@example.com"]).expect("the finding is mailed");
    assert!(
        finding.text.contains("jdbc:postgresql://10.98.9.7:5432/trade_ix") && finding.text.contains("this host is prd"),
        "{}",
        finding.text
    );
    let request = mails.iter().find(|m| m.to == ["ops1@example.com"]).expect("the stop is asked for");
    assert!(
        request.text.contains("standin.sh stop consumer") && request.text.contains("never SIGKILL"),
        "{}",
        request.text
    );
    assert!(host.service_pid("consumer").is_some(), "Tomcat still runs until someone approves");

    let (approve, _) = request.links();
    let (_, page) = host.get(&approve);
    host.press(&page);
    let done = host.wait_decision("c6_pool_init", 3);
    assert_eq!(done["decision"], "applied", "{done:#}");
    host.wait_until("the consumer stopped", || host.service_pid("consumer").is_none());
    assert_eq!(host.starts("consumer"), 1, "stopped, not restarted: a person rebuilds first");
    host.stop_agent();
}

#[test]
fn c6_a_database_out_of_connection_slots_is_told_not_rebuilt() {
    let mut host = host();
    host.start_service("consumer", "logs/info.log");
    host.start_agent();
    host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [Druid-ConnectionPool-Create-1] ERROR com.alibaba.druid.pool.DruidDataSource - create connection SQLException, url: jdbc:postgresql://10.98.9.7:5432/trade_ix, errorCode 0, state 53300\n\
         org.postgresql.util.PSQLException: FATAL: sorry, too many clients already\n",
    );
    let d = host.wait_decision("c6_pool_init", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    let finding = host.wait_mails(1).remove(0);
    assert_eq!(finding.to, ["oncall@example.com"]);
    assert!(
        finding.text.contains("no free connection slots") && finding.text.contains("Runbook C7"),
        "{}",
        finding.text
    );
    // A marker after it shows the record was decided whole and alone.
    host.append("logs/error.log", &common::wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    assert_eq!(host.decisions("c6_pool_init").len(), 1, "no Tomcat stop proposed");
    assert!(host.audit_of_kind("approval-requested").is_empty(), "nothing to approve");
    assert!(host.service_pid("consumer").is_some(), "Tomcat keeps running");
    host.stop_agent();
}
