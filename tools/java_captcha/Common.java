import java.awt.Font;
import java.awt.GraphicsEnvironment;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferByte;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.zip.CRC32;
import java.util.zip.Deflater;
import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.ImageWriteParam;
import javax.imageio.ImageWriter;
import javax.imageio.stream.MemoryCacheImageInputStream;
import javax.imageio.stream.MemoryCacheImageOutputStream;

/**
 * What the three runners share: the command line (list, fonts, gen, all, fromjson, smart), weighted plans with exact
 * quotas, seeded per-image randomness, the thread pool, progress on stderr, fonts, PNG encoding and the output files
 * ({@code images/}, {@code labels.txt}, {@code meta.tsv}).
 */
final class Common {
    private Common() {}

    /** A captcha family: its types and how one image of a type is drawn. */
    interface Family {
        String name();

        List<String> types();

        /** Type weights used by {@code smart} when {@code --mix} is not given. */
        Map<String, Double> defaultMix();

        /** Length weights of a type when neither the command line nor a config names them. */
        Map<String, Double> defaultLengths(String type);

        /** Font weights of a type when neither the command line nor a config names them. */
        Map<String, Double> defaultFonts(String type);

        /** Size weights used when {@code --sizes} (or a config's "sizes") is not given. */
        default String defaultSizes() {
            return DEFAULT_SIZES;
        }

        /** Draws the image described by {@code job}; {@code rnd} is the image's own generator. */
        Sample draw(Job job, Random rnd, FontBook fonts) throws IOException;
    }

    /** One planned image. {@code length} is characters (or operands for arithmetic). */
    record Job(int index, String type, int width, int height, int length, Weighted fonts) {}

    /** A resolved font and the name meta.tsv records for it (e.g. "Dialog", "builtin:ransom"). */
    record ChosenFont(Font font, String name) {}

    /**
     * One drawn image: encoded bytes plus what the label files record. {@code flags} is empty or a comma-separated
     * list, e.g. {@code edge_clip} when glyphs run off the canvas (the realdev set's flag of the same name).
     * {@code width} and {@code height} are the drawn size when the family chooses it itself, 0 when it is the job's.
     */
    record Sample(byte[] bytes, String extension, String label, String answer, String font, String flags, int width,
            int height) {
        Sample(byte[] bytes, String extension, String label, String answer, String font) {
            this(bytes, extension, label, answer, font, "");
        }

        Sample(byte[] bytes, String extension, String label, String answer, String font, String flags) {
            this(bytes, extension, label, answer, font, flags, 0, 0);
        }
    }

    static final class UsageException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    static final String DEFAULT_SIZES = "160x60:40,180x64:20,200x64:15,256x64:10,120x40:10,96x32:5";
    static final String DEFAULT_LENGTHS = "4:50,5:25,6:25";

    // ---------------------------------------------------------------- command line

    /** Parsed arguments: positionals and {@code --name value} options. */
    static final class Args {
        final List<String> positional = new ArrayList<>();
        final Map<String, String> options = new LinkedHashMap<>();

        Args(String[] argv) {
            for (int i = 0; i < argv.length; i++) {
                String a = argv[i];
                if (a.equals("--help") || a.equals("-h")) {
                    positional.add(0, "help");
                } else if (a.startsWith("--") && a.length() > 2) {
                    String key = a.substring(2);
                    int eq = key.indexOf('=');
                    if (eq >= 0) {
                        options.put(key.substring(0, eq), key.substring(eq + 1));
                    } else if (i + 1 < argv.length) {
                        options.put(key, argv[++i]);
                    } else {
                        throw new UsageException("option --" + key + " needs a value");
                    }
                } else {
                    positional.add(a);
                }
            }
        }

        String option(String name, String fallback) {
            return options.getOrDefault(name, fallback);
        }

        int intOption(String name, int fallback) {
            String v = options.get(name);
            if (v == null) {
                return fallback;
            }
            try {
                return Integer.parseInt(v.trim());
            } catch (NumberFormatException e) {
                throw new UsageException("--" + name + " must be an integer, got '" + v + "'");
            }
        }

        String positional(int i, String what) {
            if (i >= positional.size()) {
                throw new UsageException("missing argument: " + what);
            }
            return positional.get(i);
        }

        int positiveInt(int i, String what) {
            String v = positional(i, what);
            try {
                int n = Integer.parseInt(v);
                if (n < 0) {
                    throw new NumberFormatException();
                }
                return n;
            } catch (NumberFormatException e) {
                throw new UsageException(what + " must be a non-negative integer, got '" + v + "'");
            }
        }
    }

    static String usage(Family family) {
        String runner = family.getClass().getSimpleName();
        return String.join("\n",
                "usage: java -cp build/java " + runner + " <command> ...",
                "  list                                   the types of this family",
                "  fonts [--font-dir DIR]                 installed fonts with ASCII/ARITH/CN coverage",
                "  gen <type> <out> <count> [options]     one type",
                "  all <outRoot> <perType> [options]      every type, each into <outRoot>/<type>/",
                "  fromjson <config.json> <out> <total>   the type mix, sizes, lengths and fonts of a config file",
                "  fromjson <config.json> dryrun <total>  print the plan only",
                "  smart <out> <total> [options]          a weighted mix of types (--mix)",
                "options:",
                "  --sizes \"160x60:40,...\"   image sizes and weights (default " + DEFAULT_SIZES + ")",
                "  --len \"4:50,5:25,6:25\"    text lengths and weights (gen: a single number fixes the length)",
                "  --arith-len \"2:80,3:20\"   operands of arithmetic types (EasyCaptcha)",
                "  --fonts \"builtin:30,Dialog:70\"   font names and weights ('builtin' = EasyCaptcha TTFs)",
                "  --font-dir DIR            folder with the ten EasyCaptcha TTFs",
                "  --mix \"type:w,...\"        type weights for smart",
                "  --threads N               worker threads (default: number of CPUs)",
                "  --seed S                  makes the run byte-reproducible, whatever the thread count",
                "output: <out>/images/%08d.<png|gif>, <out>/labels.txt, <out>/meta.tsv");
    }

    /** Entry point shared by the runners: parses the command and exits non-zero with a message on errors. */
    static void main(Family family, String[] argv) {
        System.setProperty("java.awt.headless", "true"); // no display needed, no Dock icon on macOS
        int code;
        try {
            code = run(family, argv);
        } catch (UsageException e) {
            System.err.println(family.name() + ": error: " + e.getMessage());
            code = 2;
        } catch (Exception e) {
            System.err.println(family.name() + ": failed: " + e);
            code = 1;
        }
        System.exit(code);
    }

    static int run(Family family, String[] argv) throws Exception {
        Args args = new Args(argv);
        String command = args.positional.isEmpty() ? "list" : args.positional.get(0);
        switch (command) {
            case "list" -> {
                family.types().forEach(System.out::println);
                return 0;
            }
            case "help", "-h", "--help" -> {
                System.out.println(usage(family));
                return 0;
            }
            case "fonts" -> {
                FontBook.printFonts(args.option("font-dir", null));
                return 0;
            }
            case "gen" -> {
                String type = checkType(family, args.positional(1, "type"));
                Path out = Paths.get(args.positional(2, "output folder"));
                int count = args.positiveInt(3, "count");
                Planner planner = new Planner(args);
                planner.add(type, count, lengths(family, type, args), fontsFor(family, type, args));
                return generate(family, args, out, planner.plan(sizeWeights(family, args)));
            }
            case "all" -> {
                Path root = Paths.get(args.positional(1, "output root"));
                int perType = args.positiveInt(2, "count per type");
                for (String type : family.types()) {
                    Planner planner = new Planner(args);
                    planner.add(type, perType, lengths(family, type, args), fontsFor(family, type, args));
                    Path out = root.resolve(type.replace(':', '_'));
                    int rc = generate(family, args, out, planner.plan(sizeWeights(family, args)));
                    if (rc != 0) {
                        return rc;
                    }
                }
                return 0;
            }
            case "smart" -> {
                Path out = Paths.get(args.positional(1, "output folder"));
                int total = args.positiveInt(2, "total");
                Weighted mix = args.options.containsKey("mix")
                        ? Weighted.parse(args.option("mix", ""), "--mix") : new Weighted(family.defaultMix());
                Planner planner = new Planner(args);
                int[] perType = mix.quotas(total);
                for (int t = 0; t < mix.size(); t++) {
                    String type = checkType(family, mix.name(t));
                    planner.add(type, perType[t], lengths(family, type, args), fontsFor(family, type, args));
                }
                return generate(family, args, out, planner.plan(sizeWeights(family, args)));
            }
            case "fromjson" -> {
                Path config = Paths.get(args.positional(1, "config.json"));
                Path out = Paths.get(args.positional(2, "output folder"));
                int total = args.positiveInt(3, "total");
                List<Job> jobs = planFromConfig(family, args, config, total);
                if (out.toString().equals("dryrun")) { // the reference's "fromjson <config> dryrun <total>"
                    printPlan(jobs);
                    return 0;
                }
                return generate(family, args, out, jobs);
            }
            default -> throw new UsageException("unknown command '" + command + "'\n" + usage(family));
        }
    }

    /** Planned counts per type, size and length (nothing is drawn). */
    static void printPlan(List<Job> jobs) {
        Map<String, Integer> types = new TreeMap<>();
        Map<String, Integer> sizes = new TreeMap<>();
        Map<String, Integer> lengths = new TreeMap<>();
        for (Job j : jobs) {
            types.merge(j.type(), 1, Integer::sum);
            sizes.merge(j.width() + "x" + j.height(), 1, Integer::sum);
            lengths.merge(j.type() + " len " + j.length(), 1, Integer::sum);
        }
        System.out.println("total " + jobs.size());
        types.forEach((k, v) -> System.out.println("type\t" + k + "\t" + v));
        sizes.forEach((k, v) -> System.out.println("size\t" + k + "\t" + v));
        lengths.forEach((k, v) -> System.out.println("length\t" + k + "\t" + v));
    }

    static Weighted sizeWeights(Family family, Args args) {
        return Weighted.parse(args.option("sizes", family.defaultSizes()), "--sizes");
    }

    static String checkType(Family family, String type) {
        if (!family.types().contains(type)) {
            throw new UsageException("unknown type '" + type + "'; known types: " + String.join(", ", family.types()));
        }
        return type;
    }

    static Weighted lengths(Family family, String type, Args args) {
        String key = type.equals("arith") ? "arith-len" : "len";
        String spec = args.options.get(key);
        if (spec == null) {
            return new Weighted(family.defaultLengths(type));
        }
        return Weighted.parse(spec, "--" + key);
    }

    static Weighted fontsFor(Family family, String type, Args args) {
        String spec = args.options.get("fonts");
        return spec == null ? new Weighted(family.defaultFonts(type)) : Weighted.parse(spec, "--fonts");
    }

    // ---------------------------------------------------------------- weights and plans

    /** Names with non-negative weights, in the order given; {@code name:weight,...} or a JSON object. */
    static final class Weighted {
        private final List<String> names = new ArrayList<>();
        private final List<Double> weights = new ArrayList<>();
        private double[] cumulative;

        Weighted(Map<String, Double> map) {
            map.forEach((k, v) -> {
                if (v > 0) {
                    names.add(k);
                    weights.add(v);
                }
            });
            if (names.isEmpty()) {
                throw new UsageException("empty weight list " + map);
            }
            cumulative = new double[names.size()];
            double sum = 0;
            for (int i = 0; i < names.size(); i++) {
                sum += weights.get(i);
                cumulative[i] = sum;
            }
        }

        static Weighted parse(String spec, String what) {
            Map<String, Double> map = new LinkedHashMap<>();
            for (String item : spec.split(",")) {
                String s = item.trim();
                if (s.isEmpty()) {
                    continue;
                }
                int colon = s.lastIndexOf(':');
                String name = s;
                double w = 1;
                if (colon > 0) {
                    try {
                        w = Double.parseDouble(s.substring(colon + 1).trim());
                        name = s.substring(0, colon).trim();
                    } catch (NumberFormatException e) {
                        name = s; // a name that itself contains ':' (ctext types) without a weight
                    }
                }
                if (w < 0 || Double.isNaN(w)) {
                    throw new UsageException(what + ": negative weight in '" + s + "'");
                }
                map.merge(name, w, Double::sum);
            }
            if (map.values().stream().noneMatch(v -> v > 0)) {
                throw new UsageException(what + ": no positive weight in '" + spec + "'");
            }
            return new Weighted(map);
        }

        static Weighted fromJson(Object value, String what) {
            if (value instanceof String s) {
                return parse(s, what);
            }
            if (value instanceof Map<?, ?> m) {
                Map<String, Double> map = new LinkedHashMap<>();
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    if (!(e.getValue() instanceof Double d)) {
                        throw new UsageException(what + ": weight of '" + e.getKey() + "' is not a number");
                    }
                    map.put(String.valueOf(e.getKey()), d);
                }
                if (map.values().stream().noneMatch(v -> v > 0)) {
                    throw new UsageException(what + ": no positive weight");
                }
                return new Weighted(map);
            }
            throw new UsageException(what + ": expected an object of weights or a \"name:weight,...\" string");
        }

        Map<String, Double> asMap() {
            Map<String, Double> m = new LinkedHashMap<>();
            for (int i = 0; i < names.size(); i++) {
                m.put(names.get(i), weights.get(i));
            }
            return m;
        }

        int size() {
            return names.size();
        }

        String name(int i) {
            return names.get(i);
        }

        List<String> names() {
            return Collections.unmodifiableList(names);
        }

        String pick(Random rnd) {
            double r = rnd.nextDouble() * cumulative[cumulative.length - 1];
            for (int i = 0; i < cumulative.length; i++) {
                if (r < cumulative[i]) {
                    return names.get(i);
                }
            }
            return names.get(names.size() - 1);
        }

        /** Exact counts summing to {@code total}: floors, then the largest remainders get one more. */
        int[] quotas(int total) {
            double sum = cumulative[cumulative.length - 1];
            int n = names.size();
            int[] q = new int[n];
            double[] frac = new double[n];
            int given = 0;
            for (int i = 0; i < n; i++) {
                double exact = total * weights.get(i) / sum;
                q[i] = (int) Math.floor(exact);
                frac[i] = exact - q[i];
                given += q[i];
            }
            Integer[] order = new Integer[n];
            for (int i = 0; i < n; i++) {
                order[i] = i;
            }
            Arrays.sort(order, (a, b) -> Double.compare(frac[b], frac[a])); // stable: ties keep the given order
            for (int k = 0; given < total; k++, given++) {
                q[order[k % n]]++;
            }
            return q;
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < names.size(); i++) {
                sb.append(i == 0 ? "" : ",").append(names.get(i)).append(':').append(fmt(weights.get(i)));
            }
            return sb.toString();
        }
    }

    static String fmt(double d) {
        return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
    }

    static List<int[]> sizesOf(Weighted sizes) {
        List<int[]> out = new ArrayList<>();
        for (String s : sizes.names()) {
            String[] wh = s.toLowerCase(Locale.ROOT).split("x");
            try {
                int w = Integer.parseInt(wh[0].trim());
                int h = Integer.parseInt(wh[1].trim());
                if (wh.length != 2 || w < 16 || h < 16 || w > 2000 || h > 1000) {
                    throw new NumberFormatException();
                }
                out.add(new int[] {w, h});
            } catch (RuntimeException e) {
                throw new UsageException("bad size '" + s + "': expected WxH, e.g. 160x60 (16..2000 x 16..1000)");
            }
        }
        return out;
    }

    /**
     * Collects (type, count, lengths, fonts) requests. Lengths get exact quotas over all types that share the same
     * length weights (so a 4:50,5:25,6:25 mix is exact overall, not just per type), sizes exact quotas over the run.
     */
    static final class Planner {
        private final long seed;
        private record Request(String type, int count, Weighted lengths, Weighted fonts) {}

        private record Entry(String type, int length, Weighted fonts) {}

        private final List<Request> requests = new ArrayList<>();

        Planner(Args args) {
            this.seed = seedOf(args);
        }

        void add(String type, int count, Weighted lengths, Weighted fonts) {
            for (String name : lengths.names()) {
                int len;
                try {
                    len = Integer.parseInt(name.trim());
                } catch (NumberFormatException e) {
                    throw new UsageException("length '" + name + "' is not an integer");
                }
                if (len < 1 || len > 16) {
                    throw new UsageException("length " + len + " out of range 1..16");
                }
            }
            requests.add(new Request(type, count, lengths, fonts));
        }

        /** Jobs in a seeded random order, numbered from 1, with sizes dealt by exact quotas of {@code weights}. */
        List<Job> plan(Weighted weights) {
            Random planRnd = new Random(seed);
            List<Entry> entries = new ArrayList<>();
            Map<String, List<Request>> byLengths = new LinkedHashMap<>();
            for (Request r : requests) {
                byLengths.computeIfAbsent(r.lengths().toString(), k -> new ArrayList<>()).add(r);
            }
            for (List<Request> group : byLengths.values()) {
                Weighted lengths = group.get(0).lengths();
                int groupTotal = group.stream().mapToInt(Request::count).sum();
                int[] perLength = lengths.quotas(groupTotal);
                List<Integer> dealt = new ArrayList<>(groupTotal);
                for (int i = 0; i < lengths.size(); i++) {
                    for (int k = 0; k < perLength[i]; k++) {
                        dealt.add(Integer.parseInt(lengths.name(i).trim()));
                    }
                }
                Collections.shuffle(dealt, planRnd);
                int next = 0;
                for (Request r : group) {
                    for (int k = 0; k < r.count(); k++) {
                        entries.add(new Entry(r.type(), dealt.get(next++), r.fonts()));
                    }
                }
            }
            List<int[]> sizeList = sizesOf(weights);
            int total = entries.size();
            int[] perSize = weights.quotas(total);
            List<int[]> sizes = new ArrayList<>(total);
            for (int s = 0; s < sizeList.size(); s++) {
                for (int k = 0; k < perSize[s]; k++) {
                    sizes.add(sizeList.get(s));
                }
            }
            Collections.shuffle(entries, planRnd);
            Collections.shuffle(sizes, planRnd);
            List<Job> jobs = new ArrayList<>(total);
            for (int i = 0; i < total; i++) {
                Entry e = entries.get(i);
                int[] wh = sizes.get(i);
                jobs.add(new Job(i + 1, e.type(), wh[0], wh[1], e.length(), e.fonts()));
            }
            return jobs;
        }
    }

    /** The run's seed: {@code --seed}, else the clock (printed so the run can be repeated). */
    static long seedOf(Args args) {
        String s = args.options.get("seed");
        if (s == null) {
            long seed = System.nanoTime() ^ System.currentTimeMillis() << 20;
            args.options.put("seed", Long.toString(seed));
            return seed;
        }
        try {
            return Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--seed must be an integer, got '" + s + "'");
        }
    }

    /** The image's own generator: a mix of the run seed and the image index, so threads do not matter. */
    static Random imageRandom(long seed, int index) {
        long z = seed + 0x9E3779B97F4A7C15L * (index + 1);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return new Random(z ^ (z >>> 31));
    }

    // ---------------------------------------------------------------- config.json

    static List<Job> planFromConfig(Family family, Args args, Path file, int total) throws IOException {
        Object parsed;
        try {
            parsed = Json.parse(Files.readString(file, StandardCharsets.UTF_8));
        } catch (java.nio.file.NoSuchFileException e) {
            throw new UsageException("config file not found: " + file);
        } catch (IllegalArgumentException e) {
            throw new UsageException("invalid config " + file + ": " + e.getMessage());
        }
        if (!(parsed instanceof Map<?, ?> root)) {
            throw new UsageException("invalid config " + file + ": top level must be an object");
        }
        Object mixValue = root.get("type_mix");
        if (mixValue == null) {
            throw new UsageException("invalid config " + file + ": missing \"type_mix\"");
        }
        Weighted mix = Weighted.fromJson(mixValue, "type_mix");
        Map<?, ?> defaults = objectOrEmpty(root.get("defaults"), "defaults");
        Map<?, ?> perType = objectOrEmpty(root.get("per_type"), "per_type");
        Weighted sizeWeights = root.containsKey("sizes")
                ? Weighted.fromJson(root.get("sizes"), "sizes") : Weighted.parse(family.defaultSizes(), "sizes");
        if (args.options.containsKey("sizes")) {
            sizeWeights = Weighted.parse(args.option("sizes", ""), "--sizes");
        }
        Planner planner = new Planner(args);
        int[] perTypeCount = mix.quotas(total);
        for (int t = 0; t < mix.size(); t++) {
            String type = mix.name(t);
            if (!family.types().contains(type)) {
                throw new UsageException("invalid config " + file + ": unknown type '" + type + "'; known: "
                        + String.join(", ", family.types()));
            }
            Map<?, ?> own = objectOrEmpty(perType.get(type), "per_type." + type);
            String lenKey = type.equals("arith") ? "arith_len" : "len";
            Object lenValue = own.containsKey(lenKey) ? own.get(lenKey)
                    : type.equals("arith") ? null : defaults.get("len");
            Weighted lengths = lenValue == null ? new Weighted(family.defaultLengths(type))
                    : Weighted.fromJson(lenValue, "per_type." + type + "." + lenKey);
            Weighted fonts = configFonts(family, type, defaults, own);
            planner.add(type, perTypeCount[t], lengths, fonts);
        }
        return planner.plan(sizeWeights);
    }

    /** Chinese and arithmetic types use only their own fonts; other types merge the defaults (own weights win). */
    private static Weighted configFonts(Family family, String type, Map<?, ?> defaults, Map<?, ?> own) {
        boolean ownOnly = type.startsWith("cn") || type.equals("arith");
        Map<String, Double> merged = new LinkedHashMap<>();
        if (!ownOnly && defaults.get("fonts") != null) {
            Weighted d = Weighted.fromJson(defaults.get("fonts"), "defaults.fonts");
            for (int i = 0; i < d.size(); i++) {
                merged.put(d.name(i), d.weights.get(i));
            }
        }
        if (own.get("fonts") != null) {
            Weighted o = Weighted.fromJson(own.get("fonts"), "per_type." + type + ".fonts");
            for (int i = 0; i < o.size(); i++) {
                merged.put(o.name(i), o.weights.get(i));
            }
        }
        return merged.isEmpty() ? new Weighted(family.defaultFonts(type)) : new Weighted(merged);
    }

    private static Map<?, ?> objectOrEmpty(Object v, String what) {
        if (v == null) {
            return Map.of();
        }
        if (v instanceof Map<?, ?> m) {
            return m;
        }
        throw new UsageException("invalid config: \"" + what + "\" must be an object");
    }

    /** A small JSON reader: objects (insertion-ordered maps), arrays, strings, numbers (Double), booleans, null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        static Object parse(String text) {
            Json p = new Json(text.startsWith("\uFEFF") ? text.substring(1) : text);
            Object v = p.value();
            p.skip();
            if (p.i != p.s.length()) {
                throw p.error("trailing characters");
            }
            return v;
        }

        private IllegalArgumentException error(String what) {
            int line = 1;
            for (int k = 0; k < Math.min(i, s.length()); k++) {
                if (s.charAt(k) == '\n') {
                    line++;
                }
            }
            return new IllegalArgumentException(what + " at line " + line + " (offset " + i + ")");
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private Object value() {
            skip();
            if (i >= s.length()) {
                throw error("unexpected end");
            }
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                skip();
                if (peek('}')) {
                    return m;
                }
                do {
                    skip();
                    if (i >= s.length() || s.charAt(i) != '"') {
                        throw error("expected a string key");
                    }
                    String k = string();
                    skip();
                    expect(':');
                    m.put(k, value());
                    skip();
                } while (peek(','));
                expect('}');
                return m;
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                skip();
                if (peek(']')) {
                    return l;
                }
                do {
                    l.add(value());
                    skip();
                } while (peek(','));
                expect(']');
                return l;
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            try {
                return Double.parseDouble(s.substring(start, i));
            } catch (NumberFormatException e) {
                i = start;
                throw error("unexpected character '" + c + "'");
            }
        }

        private boolean peek(char c) {
            if (i < s.length() && s.charAt(i) == c) {
                i++;
                return true;
            }
            return false;
        }

        private void expect(char c) {
            skip();
            if (!peek(c)) {
                throw error("expected '" + c + "'");
            }
        }

        private String string() {
            StringBuilder sb = new StringBuilder();
            i++; // opening quote
            while (i < s.length()) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return sb.toString();
                }
                if (c == '\\') {
                    if (i >= s.length()) {
                        break;
                    }
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n' -> sb.append('\n');
                        case 't' -> sb.append('\t');
                        case 'r' -> sb.append('\r');
                        case 'b' -> sb.append('\b');
                        case 'f' -> sb.append('\f');
                        case 'u' -> {
                            if (i + 4 > s.length()) {
                                throw error("bad \\u escape");
                            }
                            sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                            i += 4;
                        }
                        default -> sb.append(e);
                    }
                } else {
                    sb.append(c);
                }
            }
            throw error("unterminated string");
        }
    }

    // ---------------------------------------------------------------- running a plan

    static int threadsOf(Args args) {
        int n = args.intOption("threads", Runtime.getRuntime().availableProcessors());
        if (n < 1 || n > 256) {
            throw new UsageException("--threads must be 1..256");
        }
        return n;
    }

    /** Draws every job on a pool of threads, then writes labels.txt and meta.tsv sorted by name. */
    static int generate(Family family, Args args, Path out, List<Job> jobs) throws Exception {
        int threads = threadsOf(args);
        long seed = seedOf(args);
        Path images = prepareOutput(out);
        FontBook fonts = new FontBook(args.option("font-dir", null), family.name());
        for (Job job : jobs) {
            fonts.checkRequested(job.fonts());
        }
        Sample[] samples = new Sample[jobs.size()];
        Progress progress = new Progress(family.name() + " " + out, jobs.size());
        ExecutorService pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, family.name() + "-worker");
            t.setDaemon(true);
            return t;
        });
        try {
            int chunk = Math.max(1, Math.min(64, jobs.size() / (threads * 8) + 1));
            List<Future<?>> futures = new ArrayList<>();
            for (int start = 0; start < jobs.size(); start += chunk) {
                int from = start;
                int to = Math.min(jobs.size(), start + chunk);
                futures.add(pool.submit(() -> {
                    for (int k = from; k < to; k++) {
                        Job job = jobs.get(k);
                        Sample sample = family.draw(job, imageRandom(seed, job.index()), fonts);
                        String name = String.format(Locale.ROOT, "%08d.%s", job.index(), sample.extension());
                        Files.write(images.resolve(name), sample.bytes());
                        samples[k] = new Sample(null, sample.extension(), sample.label(), sample.answer(),
                                sample.font(), sample.flags(), sample.width(), sample.height());
                        progress.step();
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable cause = e.getCause();
                    if (cause instanceof UsageException u) {
                        throw u;
                    }
                    throw new IOException("drawing failed: " + cause, cause);
                }
            }
        } finally {
            pool.shutdownNow();
            progress.finish();
        }
        writeLabels(out, jobs, samples);
        fonts.report(System.err);
        return 0;
    }

    static Path prepareOutput(Path out) {
        Path images = out.resolve("images");
        try {
            Files.createDirectories(images);
        } catch (IOException | SecurityException e) {
            throw new UsageException("cannot create output folder " + images + ": " + e);
        }
        File probe = images.resolve(".write-test").toFile();
        try {
            Files.write(probe.toPath(), new byte[0]);
            Files.delete(probe.toPath());
        } catch (IOException | SecurityException e) {
            throw new UsageException("output folder " + images + " is not writable: " + e);
        }
        return images;
    }

    static void writeLabels(Path out, List<Job> jobs, Sample[] samples) throws IOException {
        StringBuilder labels = new StringBuilder();
        StringBuilder meta = new StringBuilder("filename\tlabel\ttype\twidth\theight\tfont\tanswer\tflags\n");
        for (int k = 0; k < jobs.size(); k++) { // jobs are in index order, so names are sorted
            Job job = jobs.get(k);
            Sample s = samples[k];
            String name = String.format(Locale.ROOT, "%08d.%s", job.index(), s.extension());
            labels.append(name).append('\t').append(s.label()).append('\n');
            meta.append(name).append('\t').append(s.label()).append('\t').append(job.type()).append('\t')
                    .append(s.width() > 0 ? s.width() : job.width()).append('\t')
                    .append(s.height() > 0 ? s.height() : job.height()).append('\t').append(s.font())
                    .append('\t').append(s.answer() == null ? "" : s.answer()).append('\t').append(s.flags())
                    .append('\n');
        }
        Files.writeString(out.resolve("labels.txt"), labels, StandardCharsets.UTF_8);
        Files.writeString(out.resolve("meta.tsv"), meta, StandardCharsets.UTF_8);
    }

    /** One stderr line with count, rate and ETA, refreshed at most twice a second. */
    static final class Progress {
        private final String what;
        private final int total;
        private final long start = System.nanoTime();
        private final AtomicInteger done = new AtomicInteger();
        private volatile long lastPrint;

        Progress(String what, int total) {
            this.what = what;
            this.total = total;
        }

        void step() {
            int d = done.incrementAndGet();
            long now = System.nanoTime();
            if (now - lastPrint > 500_000_000L) {
                synchronized (this) {
                    if (now - lastPrint > 500_000_000L) {
                        lastPrint = now;
                        print(d, now, false);
                    }
                }
            }
        }

        private void print(int d, long now, boolean last) {
            double secs = Math.max(1e-9, (now - start) / 1e9);
            double rate = d / secs;
            long eta = rate > 0 ? Math.round((total - d) / rate) : 0;
            System.err.printf(Locale.ROOT, "\r%s: %d/%d (%.1f%%) %.0f img/s ETA %d:%02d%s", what, d, total,
                    total == 0 ? 100.0 : 100.0 * d / total, rate, eta / 60, eta % 60, last ? "\n" : "");
            System.err.flush();
        }

        synchronized void finish() {
            print(done.get(), System.nanoTime(), true);
        }
    }

    // ---------------------------------------------------------------- fonts

    /**
     * Resolves font names to fonts. {@code builtin} means one of the ten EasyCaptcha TTFs from {@code --font-dir}.
     * A name that is not installed gets Java's own fallback (the logical font Dialog), as the real libraries do, and is
     * counted in the summary; text a font cannot display (Chinese in a Latin font) is redrawn with Dialog when Dialog
     * can display it, counted too, and fails the run when no font can.
     */
    static final class FontBook {
        static final String[] BUILTIN = {"actionj", "epilog", "fresnel", "headache", "lexo", "prefix", "progbot",
            "ransom", "robot", "scandal"};
        static final Set<String> LOGICAL = Set.of("dialog", "dialoginput", "sansserif", "serif", "monospaced");

        private final String fontDir;
        private final String family;
        private final Map<String, Font> builtin = new LinkedHashMap<>();
        private final Map<String, Font> cache = new ConcurrentHashMap<>();
        private final Map<String, LongAdder> missing = new ConcurrentHashMap<>();
        private final Map<String, LongAdder> substituted = new ConcurrentHashMap<>();
        private static Set<String> installed;

        FontBook(String fontDir, String family) {
            this.fontDir = fontDir != null ? fontDir : autodetectFontDir();
            this.family = family;
        }

        /** Looks for the TTFs of the pip package easy-captcha-python in the project venv (EASY_CAPTCHA_FONT_DIR first). */
        static String autodetectFontDir() {
            String env = System.getenv("EASY_CAPTCHA_FONT_DIR");
            if (env != null && !env.isEmpty()) {
                return env;
            }
            File lib = new File(".venv/lib");
            File[] pythons = lib.listFiles();
            if (pythons != null) {
                Arrays.sort(pythons);
                for (File p : pythons) {
                    File dir = new File(p, "site-packages/easy_captcha/fonts");
                    if (new File(dir, "actionj.ttf").isFile()) {
                        return dir.getPath();
                    }
                }
            }
            return null;
        }

        static synchronized Set<String> installed() {
            if (installed == null) {
                Set<String> names = new TreeSet<>();
                Locale[] locales = {Locale.ROOT, Locale.SIMPLIFIED_CHINESE, Locale.TRADITIONAL_CHINESE};
                for (Locale l : locales) {
                    for (String n : GraphicsEnvironment.getLocalGraphicsEnvironment().getAvailableFontFamilyNames(l)) {
                        names.add(n.toLowerCase(Locale.ROOT));
                    }
                }
                installed = names;
            }
            return installed;
        }

        /** Fails early when builtin fonts are requested but the folder with the TTFs is missing. */
        void checkRequested(Weighted fonts) {
            if (fonts.names().contains("builtin")) {
                loadBuiltin();
            }
        }

        private synchronized void loadBuiltin() {
            if (!builtin.isEmpty()) {
                return;
            }
            if (fontDir == null) {
                throw new UsageException("builtin fonts requested but no --font-dir given (the folder with "
                        + "actionj.ttf ... scandal.ttf, e.g. .venv/lib/python3.*/site-packages/easy_captcha/fonts)");
            }
            for (String name : BUILTIN) {
                File f = new File(fontDir, name + ".ttf");
                if (!f.isFile()) {
                    throw new UsageException("builtin fonts requested but " + f + " is missing (--font-dir "
                            + fontDir + ")");
                }
                try {
                    builtin.put(name, Font.createFont(Font.TRUETYPE_FONT, f));
                } catch (Exception e) {
                    throw new UsageException("cannot read builtin font " + f + ": " + e.getMessage());
                }
            }
        }

        static boolean isInstalled(String name) {
            String n = name.toLowerCase(Locale.ROOT);
            return LOGICAL.contains(n) || installed().contains(n);
        }

        /**
         * A font for {@code text}: {@code name} ("builtin" picks one TTF with {@code rnd}) at {@code size}; builtin
         * fonts use {@code builtinStyle}, named fonts {@code namedStyle}.
         */
        ChosenFont font(String name, int namedStyle, int builtinStyle, float size, String text, Random rnd) {
            Font font;
            String used;
            if (name.equals("builtin")) {
                loadBuiltin();
                String pick = BUILTIN[rnd.nextInt(BUILTIN.length)];
                font = derived("builtin:" + pick, builtin.get(pick), builtinStyle, size);
                used = "builtin:" + pick;
            } else {
                if (!isInstalled(name)) {
                    missing.computeIfAbsent(name, k -> new LongAdder()).increment();
                }
                font = derived(name, null, namedStyle, size);
                used = font.getFamily(Locale.ROOT).equals("Dialog") && !name.equalsIgnoreCase("dialog")
                        ? "Dialog" : name;
            }
            if (text != null && font.canDisplayUpTo(text) != -1) {
                Font dialog = derived("Dialog", null, namedStyle, size);
                if (dialog.canDisplayUpTo(text) != -1) {
                    throw new UsageException("no installed font can display '" + text + "' (requested " + name
                            + "); install fonts-noto-cjk or fonts-wqy-zenhei");
                }
                substituted.computeIfAbsent(used, k -> new LongAdder()).increment();
                return new ChosenFont(dialog, "Dialog");
            }
            return new ChosenFont(font, used);
        }

        /**
         * One font per character of {@code text}, each name drawn from {@code weights} (Kaptcha's word renderer);
         * every distinct name is resolved once, so the summary counts images, not glyphs. Adds the names to
         * {@code used}.
         */
        Font[] perCharacter(Weighted weights, String text, int style, float size, Random rnd, Set<String> used) {
            Map<String, Font> resolved = new LinkedHashMap<>();
            Font[] fonts = new Font[text.length()];
            for (int i = 0; i < fonts.length; i++) {
                String name = weights.pick(rnd);
                Font f = resolved.get(name);
                if (f == null) {
                    ChosenFont chosen = font(name, style, style, size, text, rnd);
                    f = chosen.font();
                    resolved.put(name, f);
                    used.add(chosen.name());
                }
                fonts[i] = f;
            }
            return fonts;
        }

        private Font derived(String key, Font base, int style, float size) {
            String k = key + "|" + style + "|" + size;
            Font f = cache.get(k);
            if (f == null) {
                f = base != null ? base.deriveFont(style, size) : new Font(key, style, Math.round(size)).deriveFont(size);
                cache.put(k, f);
            }
            return f;
        }

        void report(PrintStream err) {
            new TreeMap<>(missing).forEach((name, n) -> err.printf(Locale.ROOT,
                    "%s: font '%s' is not installed: %d images drawn with Java's fallback Dialog%n", family, name,
                    n.sum()));
            new TreeMap<>(substituted).forEach((name, n) -> err.printf(Locale.ROOT,
                    "%s: font '%s' cannot display the text: %d images drawn with Dialog instead%n", family, name,
                    n.sum()));
        }

        static void printFonts(String fontDir) {
            String dir = fontDir != null ? fontDir : autodetectFontDir();
            List<String> names = new ArrayList<>();
            for (String n : GraphicsEnvironment.getLocalGraphicsEnvironment().getAvailableFontFamilyNames(Locale.ROOT)) {
                names.add(n);
            }
            names.sort(String.CASE_INSENSITIVE_ORDER);
            System.out.println("# " + names.size() + " font families; builtin dir: " + (dir == null ? "-" : dir));
            System.out.println("name\tASCII\tARITH\tCN");
            for (String n : names) {
                printFlags(n, new Font(n, Font.PLAIN, 32));
            }
            if (dir != null) {
                for (String b : BUILTIN) {
                    try {
                        printFlags("builtin:" + b,
                                Font.createFont(Font.TRUETYPE_FONT, new File(dir, b + ".ttf")).deriveFont(32f));
                    } catch (Exception e) {
                        System.out.println("builtin:" + b + "\tmissing");
                    }
                }
            }
        }

        private static void printFlags(String name, Font f) {
            String ascii = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            String arith = "0123456789+-x*/=?";
            String cn = "的一是在不了有和人这中大";
            System.out.println(name + "\t" + flag(f, ascii) + "\t" + flag(f, arith) + "\t" + flag(f, cn));
        }

        private static String flag(Font f, String s) {
            return f.canDisplayUpTo(s) == -1 ? "Y" : "-";
        }
    }

    // ---------------------------------------------------------------- encoding

    /** PNG (8-bit RGB, filter Sub on every row); faster than ImageIO and deterministic. */
    static byte[] png(BufferedImage image) {
        int w = image.getWidth();
        int h = image.getHeight();
        int[] rgb = rgbPixels(image);
        int stride = w * 3;
        byte[] raw = new byte[(stride + 1) * h];
        int pos = 0;
        for (int y = 0; y < h; y++) {
            raw[pos++] = 1; // Sub: each byte minus the same channel of the pixel to its left
            int left = 0;
            for (int x = 0; x < w; x++) {
                int p = rgb[y * w + x];
                raw[pos++] = (byte) ((p >> 16) - (left >> 16));
                raw[pos++] = (byte) ((p >> 8) - (left >> 8));
                raw[pos++] = (byte) (p - left);
                left = p;
            }
        }
        Deflater deflater = new Deflater(3);
        deflater.setInput(raw);
        deflater.finish();
        ByteArrayOutputStream idat = new ByteArrayOutputStream(raw.length / 3 + 64);
        byte[] buf = new byte[16384];
        while (!deflater.finished()) {
            int n = deflater.deflate(buf);
            idat.write(buf, 0, n);
        }
        deflater.end();
        ByteArrayOutputStream out = new ByteArrayOutputStream(idat.size() + 64);
        out.writeBytes(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
        byte[] ihdr = {(byte) (w >>> 24), (byte) (w >>> 16), (byte) (w >>> 8), (byte) w, (byte) (h >>> 24),
            (byte) (h >>> 16), (byte) (h >>> 8), (byte) h, 8, 2, 0, 0, 0};
        chunk(out, "IHDR", ihdr);
        chunk(out, "IDAT", idat.toByteArray());
        chunk(out, "IEND", new byte[0]);
        return out.toByteArray();
    }

    private static final ThreadLocal<ImageWriter> JPEG_WRITER =
            ThreadLocal.withInitial(() -> ImageIO.getImageWritersByFormatName("jpg").next());
    private static final ThreadLocal<ImageReader> JPEG_READER =
            ThreadLocal.withInitial(() -> ImageIO.getImageReadersByFormatName("jpg").next());

    /**
     * The image encoded as JPEG and decoded again: at {@code quality} (0..1), or with ImageIO's default settings
     * (quality 0.75) when {@code quality} is negative. Writer and reader are reused per thread.
     */
    static BufferedImage jpegRoundTrip(BufferedImage image, float quality) throws IOException {
        // handing the writer 3-byte BGR rows spares its slow per-pixel conversion of packed ints
        BufferedImage bgr = new BufferedImage(image.getWidth(), image.getHeight(), BufferedImage.TYPE_3BYTE_BGR);
        byte[] bytes = ((DataBufferByte) bgr.getRaster().getDataBuffer()).getData();
        int[] rgb = rgbPixels(image);
        for (int i = 0, j = 0; i < rgb.length; i++, j += 3) {
            bytes[j] = (byte) rgb[i];
            bytes[j + 1] = (byte) (rgb[i] >> 8);
            bytes[j + 2] = (byte) (rgb[i] >> 16);
        }
        ImageWriter writer = JPEG_WRITER.get();
        ImageWriteParam param = null;
        if (quality >= 0) {
            param = writer.getDefaultWriteParam();
            param.setCompressionMode(ImageWriteParam.MODE_EXPLICIT);
            param.setCompressionQuality(quality);
        }
        ByteArrayOutputStream jpeg = new ByteArrayOutputStream(8192);
        try (var out = new MemoryCacheImageOutputStream(jpeg)) {
            writer.setOutput(out);
            writer.write(null, new IIOImage(bgr, null, null), param);
        }
        ImageReader reader = JPEG_READER.get();
        try (var in = new MemoryCacheImageInputStream(new ByteArrayInputStream(jpeg.toByteArray()))) {
            reader.setInput(in);
            return reader.read(0);
        }
    }

    /** The pixels of an image as 0xRRGGBB ints: the raster itself for TYPE_INT_RGB, else a converted copy. */
    static int[] rgbPixels(BufferedImage image) {
        if (image.getType() == BufferedImage.TYPE_3BYTE_BGR) { // what the JPEG reader returns
            byte[] bgr = ((DataBufferByte) image.getRaster().getDataBuffer()).getData();
            int[] rgb = new int[bgr.length / 3];
            for (int i = 0, j = 0; i < rgb.length; i++, j += 3) {
                rgb[i] = (bgr[j + 2] & 255) << 16 | (bgr[j + 1] & 255) << 8 | (bgr[j] & 255);
            }
            return rgb;
        }
        if (image.getType() != BufferedImage.TYPE_INT_RGB) {
            BufferedImage copy = new BufferedImage(image.getWidth(), image.getHeight(), BufferedImage.TYPE_INT_RGB);
            java.awt.Graphics2D g = copy.createGraphics();
            g.drawImage(image, 0, 0, null);
            g.dispose();
            image = copy;
        }
        return ((java.awt.image.DataBufferInt) image.getRaster().getDataBuffer()).getData();
    }

    private static void chunk(ByteArrayOutputStream out, String type, byte[] data) {
        byte[] t = type.getBytes(StandardCharsets.US_ASCII);
        int n = data.length;
        out.writeBytes(new byte[] {(byte) (n >>> 24), (byte) (n >>> 16), (byte) (n >>> 8), (byte) n});
        out.writeBytes(t);
        out.writeBytes(data);
        CRC32 crc = new CRC32();
        crc.update(t);
        crc.update(data);
        long c = crc.getValue();
        out.writeBytes(new byte[] {(byte) (c >>> 24), (byte) (c >>> 16), (byte) (c >>> 8), (byte) c});
    }
}
