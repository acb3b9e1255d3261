package com.goldoffice.datasync.consumer;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.regex.Pattern;

import javax.sql.DataSource;

import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.alibaba.fastjson.JSON;
import com.alibaba.fastjson.JSONObject;

/**
 * One consumer of group bo_01: polls, writes the batch to every target
 * database (one transaction each, batch statements), then commits the
 * offsets. A failed write is logged with its exception and the batch is
 * read again from the last commit; changes are idempotent (insert-or-skip,
 * upsert, delete by key), so a replay only counts duplicates.
 */
public class ConsumerThread implements Runnable {
    private static final Logger logger = LoggerFactory.getLogger(ConsumerThread.class);
    private static final Pattern IDENT = Pattern.compile("[A-Za-z_][A-Za-z0-9_]{0,62}");

    private final KafkaConsumer<String, String> consumer;
    private final String topic;
    private final Map<String, ? extends DataSource> targets;
    private final long recordDelayMs;
    private volatile boolean running = true;

    public ConsumerThread(Properties kafka, String topic, Map<String, ? extends DataSource> targets,
            long recordDelayMs) {
        Properties p = new Properties();
        p.putAll(kafka);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        this.consumer = new KafkaConsumer<>(p);
        this.topic = topic;
        this.targets = targets;
        this.recordDelayMs = recordDelayMs;
    }

    public void shutdown() {
        running = false;
        consumer.wakeup();
    }

    @Override
    public void run() {
        try {
            consumer.subscribe(Collections.singletonList(topic));
            while (running) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(1000));
                if (records.isEmpty()) {
                    continue;
                }
                try {
                    int duplicates = apply(records);
                    sleep(recordDelayMs * records.count());
                    consumer.commitSync();
                    logger.info("consumed {} records of {} (duplicates={})", records.count(), topic, duplicates);
                    for (ConsumerRecord<String, String> r : records) {
                        JSONObject change = JSON.parseObject(r.value());
                        if ("heartbeat".equals(change.getString("table"))) {
                            logger.info("heartbeat consumed source={} binlog={}", change.getString("source"),
                                change.getString("binlog"));
                        }
                    }
                } catch (CommitFailedException e) {
                    logger.error("commit failed", e);
                } catch (SQLException | RuntimeException e) {
                    logger.error("write to postgresql failed, {} records will be read again", records.count(), e);
                    rewind(records);
                    sleep(5000);
                }
            }
        } catch (WakeupException e) {
            if (running) {
                logger.error("consumer woken up while running", e);
            } else {
                logger.warn("consumer woken up", e);
            }
        } catch (Throwable e) {
            logger.error("consumer thread died", e);
        } finally {
            consumer.close();
            logger.info("consumer closed");
        }
    }

    /** Seeks every partition of the batch back to its first record. */
    private void rewind(ConsumerRecords<String, String> records) {
        for (TopicPartition tp : records.partitions()) {
            consumer.seek(tp, records.records(tp).get(0).offset());
        }
    }

    private int apply(ConsumerRecords<String, String> records) throws SQLException {
        List<JSONObject> changes = new ArrayList<>();
        for (ConsumerRecord<String, String> r : records) {
            changes.add(JSON.parseObject(r.value()));
        }
        int duplicates = 0;
        for (Map.Entry<String, ? extends DataSource> target : targets.entrySet()) {
            try (Connection c = target.getValue().getConnection()) {
                c.setAutoCommit(false);
                try {
                    duplicates = write(c, changes);
                    c.commit();
                } catch (SQLException | RuntimeException e) {
                    c.rollback();
                    throw e;
                }
            }
        }
        return duplicates;
    }

    /** Batches consecutive changes of one table and kind into one statement. */
    private int write(Connection c, List<JSONObject> changes) throws SQLException {
        int duplicates = 0;
        PreparedStatement batch = null;
        String batchSql = null;
        List<String> pending = new ArrayList<>();
        for (JSONObject change : changes) {
            String table = ident(change.getString("table"));
            String type = change.getString("type");
            JSONObject data = change.getJSONObject("data");
            List<String> keys = change.getJSONArray("keys").toJavaList(String.class);
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("source", change.getString("source"));
            data.forEach(row::put);
            String sql = sql(table, type, row, keys);
            if (!sql.equals(batchSql)) {
                duplicates += flush(batch, pending);
                batch = c.prepareStatement(sql);
                batchSql = sql;
            }
            int i = 1;
            if ("DELETE".equals(type)) {
                batch.setObject(i++, row.get("source"));
                for (String k : keys) {
                    batch.setObject(i++, row.get(k));
                }
            } else {
                for (Object v : row.values()) {
                    batch.setObject(i++, v);
                }
            }
            batch.addBatch();
            pending.add(type);
        }
        duplicates += flush(batch, pending);
        return duplicates;
    }

    private static int flush(PreparedStatement batch, List<String> pending) throws SQLException {
        if (batch == null) {
            return 0;
        }
        int duplicates = 0;
        int[] counts = batch.executeBatch();
        for (int i = 0; i < counts.length; i++) {
            if (counts[i] == 0 && "INSERT".equals(pending.get(i))) {
                duplicates++;
            }
        }
        pending.clear();
        batch.close();
        return duplicates;
    }

    private static String sql(String table, String type, Map<String, Object> row, List<String> keys) {
        List<String> conflict = new ArrayList<>();
        conflict.add("source");
        for (String k : keys) {
            conflict.add(ident(k));
        }
        if ("DELETE".equals(type)) {
            StringBuilder where = new StringBuilder();
            for (String k : conflict) {
                where.append(where.length() == 0 ? "" : " AND ").append(k).append(" = ?");
            }
            return "DELETE FROM " + table + " WHERE " + where;
        }
        List<String> cols = new ArrayList<>();
        List<String> marks = new ArrayList<>();
        List<String> sets = new ArrayList<>();
        for (String col : row.keySet()) {
            cols.add(ident(col));
            marks.add("?");
            if (!conflict.contains(col)) {
                sets.add(ident(col) + " = EXCLUDED." + ident(col));
            }
        }
        String insert = "INSERT INTO " + table + " (" + String.join(", ", cols) + ") VALUES ("
            + String.join(", ", marks) + ") ON CONFLICT (" + String.join(", ", conflict) + ") ";
        if ("INSERT".equals(type) || sets.isEmpty()) {
            return insert + "DO NOTHING";
        }
        return insert + "DO UPDATE SET " + String.join(", ", sets);
    }

    private static String ident(String name) {
        if (name == null || !IDENT.matcher(name).matches()) {
            throw new IllegalArgumentException("not an identifier: " + name);
        }
        return name;
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
