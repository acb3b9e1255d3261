package com.goldoffice.datamonitor;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.alibaba.fastjson.JSON;
import com.alibaba.otter.canal.client.CanalConnector;
import com.alibaba.otter.canal.client.CanalConnectors;
import com.alibaba.otter.canal.protocol.CanalEntry;
import com.alibaba.otter.canal.protocol.Message;

/**
 * The pipeline's canal client ("monitor", runbook M4): one thread per canal
 * destination reads row changes through the cluster connector (the running
 * canal server is found in ZooKeeper), produces each change to Kafka and acks
 * the batch only once Kafka has it. A heartbeat row is logged per source.
 *
 * Usage: java -jar data-monitor.jar monitor.properties
 */
public class CanalClient {
    private static final Logger logger = LoggerFactory.getLogger(CanalClient.class);

    private final String destination;
    private final String zkServers;
    private final String topic;
    private final KafkaProducer<String, String> producer;
    private volatile boolean running = true;
    private CanalConnector connector;

    CanalClient(String destination, String zkServers, String topic, KafkaProducer<String, String> producer) {
        this.destination = destination;
        this.zkServers = zkServers;
        this.topic = topic;
        this.producer = producer;
    }

    public static void main(String[] args) throws Exception {
        Properties conf = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            conf.load(in);
        }
        Properties kafka = new Properties();
        kafka.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, conf.getProperty("bootstrap.servers"));
        kafka.put(ProducerConfig.ACKS_CONFIG, "all");
        // Fail fast while Kafka is down: the batch is rolled back and parsed
        // again every 15 s or so, so the log keeps saying that canal's side
        // works (runbook C5 reads it, the lab's grace is 30 s) instead of
        // blocking for a minute. max.block.ms bounds the wait for metadata
        // the producer never had; with metadata cached (the brokers went
        // down after it started), a send waits delivery.timeout.ms instead.
        kafka.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "12000");
        kafka.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "6000");
        kafka.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        kafka.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "5000");
        kafka.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        kafka.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(kafka);

        List<CanalClient> clients = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (String destination : conf.getProperty("destinations").split(",")) {
            CanalClient client = new CanalClient(destination.trim(), conf.getProperty("zkServers"),
                conf.getProperty("topic"), producer);
            Thread thread = new Thread(client::run, destination.trim() + "-monitor");
            clients.add(client);
            threads.add(thread);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            logger.info("## stop the canal client");
            clients.forEach(c -> c.running = false);
            for (Thread t : threads) {
                try {
                    t.join(20000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            producer.close();
            logger.info("## canal client is down.");
        }, "shutdown"));
        logger.info("## start the canal client for destinations {}", conf.getProperty("destinations"));
        threads.forEach(Thread::start);
    }

    private void run() {
        while (running) {
            try {
                connector = CanalConnectors.newClusterConnector(zkServers, destination, "", "");
                connector.connect();
                connector.subscribe("trade\\..*");
                connector.rollback();
                logger.info("connected to canal, destination {}", destination);
                while (running) {
                    Message message = connector.getWithoutAck(1000, 1000L, TimeUnit.MILLISECONDS);
                    long batchId = message.getId();
                    if (batchId == -1 || message.getEntries().isEmpty()) {
                        if (batchId != -1) {
                            connector.ack(batchId);
                        }
                        continue;
                    }
                    try {
                        produce(message.getEntries());
                        connector.ack(batchId);
                    } catch (Exception e) {
                        logger.error("produce to kafka failed, batch {} rolled back", batchId, e);
                        connector.rollback(batchId);
                        sleep(2000);
                    }
                }
            } catch (Throwable e) {
                logger.error("process error!", e);
                sleep(2000);
            } finally {
                if (connector != null) {
                    try {
                        connector.disconnect();
                    } catch (Throwable e) {
                        logger.warn("disconnect from canal failed: {}", e.toString());
                    }
                }
            }
        }
    }

    private void produce(List<CanalEntry.Entry> entries) throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (CanalEntry.Entry entry : entries) {
            if (entry.getEntryType() != CanalEntry.EntryType.ROWDATA) {
                continue;
            }
            CanalEntry.Header header = entry.getHeader();
            CanalEntry.RowChange change = CanalEntry.RowChange.parseFrom(entry.getStoreValue());
            CanalEntry.EventType type = change.getEventType();
            if (change.getIsDdl()) {
                logger.info("parse binlog[{}:{}] , ddl : {}", header.getLogfileName(), header.getLogfileOffset(),
                    change.getSql());
                continue;
            }
            if (type != CanalEntry.EventType.INSERT && type != CanalEntry.EventType.UPDATE
                && type != CanalEntry.EventType.DELETE) {
                continue;
            }
            for (CanalEntry.RowData row : change.getRowDatasList()) {
                List<CanalEntry.Column> columns = type == CanalEntry.EventType.DELETE ? row.getBeforeColumnsList()
                    : row.getAfterColumnsList();
                Map<String, Object> data = new LinkedHashMap<>();
                List<String> keys = new ArrayList<>();
                for (CanalEntry.Column c : columns) {
                    data.put(c.getName(), c.getIsNull() ? null : c.getValue());
                    if (c.getIsKey()) {
                        keys.add(c.getName());
                    }
                }
                Map<String, Object> change1 = new LinkedHashMap<>();
                change1.put("source", destination);
                change1.put("schema", header.getSchemaName());
                change1.put("table", header.getTableName());
                change1.put("type", type.name());
                change1.put("binlog", header.getLogfileName() + ":" + header.getLogfileOffset());
                change1.put("executeTime", header.getExecuteTime());
                change1.put("keys", keys);
                change1.put("data", data);
                String key = destination + "." + header.getTableName() + "." + keysOf(keys, data);
                // Logged as parsed, before it is produced: the monitor's log
                // tells canal's side from Kafka's (runbook C5).
                if ("heartbeat".equals(header.getTableName())) {
                    logger.info("heartbeat parsed source={} binlog[{}:{}] executeTime={}", destination,
                        header.getLogfileName(), header.getLogfileOffset(), header.getExecuteTime());
                } else {
                    logger.info("parse binlog[{}:{}] , name[{},{}] , eventType : {} , destination : {}",
                        header.getLogfileName(), header.getLogfileOffset(), header.getSchemaName(),
                        header.getTableName(), type, destination);
                }
                sent.add(producer.send(new ProducerRecord<>(topic, key, JSON.toJSONString(change1))));
            }
        }
        producer.flush();
        for (Future<RecordMetadata> f : sent) {
            f.get();
        }
    }

    private static String keysOf(List<String> keys, Map<String, Object> data) {
        StringBuilder b = new StringBuilder();
        for (String k : keys) {
            b.append(data.get(k)).append('.');
        }
        return b.toString();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
