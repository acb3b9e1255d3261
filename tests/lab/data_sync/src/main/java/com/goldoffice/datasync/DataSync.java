package com.goldoffice.datasync;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.alibaba.druid.pool.DruidDataSource;
import com.goldoffice.datasync.consumer.ConsumerThread;

/**
 * The pipeline's consumer ("data_sync", runbook M1, C1-C7): a pool of
 * ConsumerThreads in group bo_01 writing every change to both PostgreSQL
 * databases through Druid. SIGTERM stops it the way Tomcat's shutdown does:
 * each consumer is woken up (consumer.wakeup()), its loop ends and it closes.
 *
 * Usage: java -jar data-sync.jar consumer.properties jdbc.properties
 */
public class DataSync {
    private static final Logger logger = LoggerFactory.getLogger(DataSync.class);

    public static void main(String[] args) throws Exception {
        Properties consumer = load(args[0]);
        Properties jdbc = load(args[1]);
        String topic = consumer.getProperty("sync.topic");
        int threads = Integer.parseInt(consumer.getProperty("sync.threads", "3"));
        // The lab's knob for runbook C2: time spent per record, as a slow
        // downstream would (0: as fast as PostgreSQL takes it).
        long recordDelayMs = Long.parseLong(consumer.getProperty("sync.record.delay.ms", "0"));
        Properties kafka = new Properties();
        for (String name : consumer.stringPropertyNames()) {
            if (!name.startsWith("sync.")) {
                kafka.put(name, consumer.getProperty(name));
            }
        }

        Map<String, DruidDataSource> targets = new LinkedHashMap<>();
        for (String db : jdbc.getProperty("databases").split(",")) {
            DruidDataSource ds = new DruidDataSource();
            ds.setName(db.trim());
            ds.setUrl(jdbc.getProperty(db.trim() + ".url"));
            ds.setUsername(jdbc.getProperty("username"));
            ds.setPassword(jdbc.getProperty("password"));
            ds.setInitialSize(1);
            ds.setMaxActive(threads + 1);
            ds.setMaxWait(10000);
            ds.init();
            targets.put(db.trim(), ds);
        }

        List<ConsumerThread> workers = new ArrayList<>();
        List<Thread> pool = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            ConsumerThread worker = new ConsumerThread(kafka, topic, targets, recordDelayMs);
            workers.add(worker);
            pool.add(new Thread(worker, "pool-2-thread-" + (i + 1)));
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            logger.info("data_sync stopping: waking up {} consumers", workers.size());
            workers.forEach(ConsumerThread::shutdown);
            for (Thread t : pool) {
                try {
                    t.join(30000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            targets.values().forEach(DruidDataSource::close);
            logger.info("data_sync stopped");
        }, "shutdown"));
        logger.info("data_sync started: group {}, topic {}, {} consumer threads, targets {}, max.poll.records {}",
            kafka.getProperty("group.id"), topic, threads, targets.keySet(), kafka.getProperty("max.poll.records"));
        pool.forEach(Thread::start);
    }

    private static Properties load(String path) throws Exception {
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            p.load(in);
        }
        return p;
    }
}
