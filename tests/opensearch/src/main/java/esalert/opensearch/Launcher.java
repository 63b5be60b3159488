package esalert.opensearch;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Starts one OpenSearch node for esalert's real-cluster tests, prints
 * {@code ESALERT_OPENSEARCH_HTTP=127.0.0.1:<port>} on stdout once it serves HTTP,
 * and stops (deleting its data) when stdin closes, i.e. when the test binary
 * that started it exits, however it exits. With {@code -Desalert.opensearch.home=DIR}
 * the node lives in DIR and its data is kept for the next start (the cluster-cost
 * benchmark reuses its indexed data set that way).
 */
public final class Launcher {
    /** A node whose plugins come from the classpath instead of a plugins/ directory. */
    static final class ClasspathNode extends Node {
        ClasspathNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        long started = System.nanoTime();
        String kept = System.getProperty("esalert.opensearch.home");
        Path home = kept != null ? Files.createDirectories(Path.of(kept)) : Files.createTempDirectory("esalert-opensearch-");
        Settings settings = Settings.builder()
            .put("cluster.name", "esalert-test")
            .put("node.name", "esalert-test-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", "0")
            .put("transport.port", "0")
            .put("discovery.type", "single-node")
            // A nearly full disk must not turn the test indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            .build();
        LogConfigurator.registerErrorListener();
        LogConfigurator.configureWithoutConfig(settings);
        LogConfigurator.setNodeName("esalert-test-node");
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "esalert-test-node");
        List<Class<? extends Plugin>> plugins = List.of(Netty4Plugin.class, PainlessPlugin.class, CommonAnalysisPlugin.class);
        Node node = new ClasspathNode(env, plugins);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> stop(node, kept != null ? null : home)));
        node.start();
        int port = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress().getPort();
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
        System.out.println("ESALERT_OPENSEARCH_HTTP=127.0.0.1:" + port + " started_ms=" + ms);
        System.out.flush();
        // Block until the parent closes our stdin (it exited or dropped the pipe).
        InputStream in = System.in;
        byte[] buf = new byte[256];
        try {
            while (in.read(buf) >= 0) {
                // Input is ignored; only end-of-file matters.
            }
        } catch (IOException e) {
            // A broken pipe means the parent is gone, too.
        }
        System.exit(0);
    }

    /** Closes the node, then deletes {@code home} unless it is null (kept). */
    private static void stop(Node node, Path home) {
        try {
            node.close();
            node.awaitClose(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            System.err.println("closing the node: " + e);
        }
        if (home == null) {
            return;
        }
        try {
            deleteTree(home);
        } catch (IOException e) {
            System.err.println("deleting " + home + ": " + e);
        }
    }

    private static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.deleteIfExists(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                Files.deleteIfExists(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }
}
