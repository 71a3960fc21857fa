import java.awt.AlphaComposite;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.GraphicsEnvironment;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.Shape;
import java.awt.font.FontRenderContext;
import java.awt.geom.AffineTransform;
import java.awt.geom.Arc2D;
import java.awt.geom.CubicCurve2D;
import java.awt.geom.Ellipse2D;
import java.awt.geom.Line2D;
import java.awt.geom.QuadCurve2D;
import java.awt.geom.Rectangle2D;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferByte;
import java.awt.image.DataBufferInt;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.regex.Pattern;
import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.ImageWriteParam;
import javax.imageio.ImageWriter;
import javax.imageio.stream.ImageInputStream;
import javax.imageio.stream.ImageOutputStream;
import javax.imageio.stream.MemoryCacheImageInputStream;
import javax.imageio.stream.MemoryCacheImageOutputStream;

/**
 * The "wild" family: captchas drawn the way no single library does, so that a reader learns the characters rather
 * than one library's look. Every image draws its own installed font (Latin or CJK, plain, bold or italic),
 * per-character scale, stretch, rotation, shear and baseline, spacing from overlapping to loose, a smooth warp of the
 * whole text, a background (solid, gradient or texture) in one of several colour schemes, interference (lines,
 * curves, dots, speckle, grids) behind or over the text, and blur, pixel noise or a JPEG round trip afterwards. Every
 * range and probability comes from {@code config_wild.json} ({@code --wild-config FILE}); docs/generators.md,
 * section "wild", lists them.
 */
public final class WildRunner implements Common.Family {
    static final String DIGITS = "0123456789";
    static final String UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static final String LOWER = "abcdefghijklmnopqrstuvwxyz";
    static final String ARITH_SYMBOLS = "+-*x=?";
    static final String DEFAULT_CONFIG = "tools/java_captcha/config_wild.json";
    static final int EDGE_ALPHA = 32; // text-layer alpha above this counts as ink for the clip flags
    // Glyph outlines are read at this one size and scaled to the image's: a new size per image would make Java open
    // a new font scaler (and read the font file) each time.
    static final float OUTLINE_SIZE = 100f;

    private final Path configPath;
    private final long sizeSeed;
    private Settings settings;
    private final Map<String, Map<String, Double>> fontsByType = new LinkedHashMap<>();

    WildRunner(Path configPath, long sizeSeed) {
        this.configPath = configPath;
        this.sizeSeed = sizeSeed;
    }

    public static void main(String[] argv) {
        String config = DEFAULT_CONFIG;
        long seed = System.nanoTime();
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            String value = a.startsWith("--wild-config=") || a.startsWith("--seed=") ? a.substring(a.indexOf('=') + 1)
                    : (a.equals("--wild-config") || a.equals("--seed")) && i + 1 < argv.length ? argv[i + 1] : null;
            if (value != null && a.startsWith("--wild-config")) {
                config = value;
            } else if (value != null) {
                try {
                    seed = Long.parseLong(value.trim());
                } catch (NumberFormatException e) {
                    // Common reports the bad --seed
                }
            }
            if (a.equals("help") && i == 0 || a.equals("--help") || a.equals("-h")) {
                System.out.println(Common.usage(new WildRunner(null, 0)));
                System.out.println("  --wild-config FILE        this family's ranges and probabilities (default "
                        + DEFAULT_CONFIG + ")");
                return;
            }
        }
        Common.main(new WildRunner(Paths.get(config), seed), argv);
    }

    /** The settings, read on first use so that {@code list} and {@code fonts} need no config file. */
    synchronized Settings settings() {
        if (settings == null) {
            settings = Settings.load(configPath);
        }
        return settings;
    }

    @Override
    public String name() {
        return "wild";
    }

    @Override
    public List<String> types() {
        return List.of("wild_num", "wild_upper", "wild_lower", "wild_mixed", "wild_cn", "wild_arith");
    }

    /** The characters a type draws (arithmetic: digits and operators). */
    String alphabet(String type) {
        String all = switch (type) {
            case "wild_num" -> DIGITS;
            case "wild_upper" -> UPPER;
            case "wild_lower" -> LOWER;
            case "wild_mixed" -> DIGITS + UPPER + LOWER;
            case "wild_cn" -> EasyCaptchaRunner.CHINESE;
            default -> DIGITS + ARITH_SYMBOLS;
        };
        if (type.equals("wild_arith")) {
            return all;
        }
        StringBuilder kept = new StringBuilder();
        for (char c : all.toCharArray()) {
            if (settings().excludeChars.indexOf(c) < 0) {
                kept.append(c);
            }
        }
        if (kept.length() == 0) {
            throw new Common.UsageException(configPath + ": key \"exclude_chars\" removes every character of "
                    + type);
        }
        return kept.toString();
    }

    @Override
    public Map<String, Double> defaultMix() {
        Map<String, Double> mix = settings().mix;
        for (String t : mix.keySet()) {
            if (!types().contains(t)) {
                throw new Common.UsageException(configPath + ": key \"mix\": unknown type '" + t + "'; known: "
                        + String.join(", ", types()));
            }
        }
        return mix;
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        Settings s = settings();
        return type.equals("wild_cn") ? s.cnLengths : type.equals("wild_arith") ? s.arithOperands : s.lengths;
    }

    /**
     * The installed families that can display every character of the type, weighted by the first matching pattern
     * of "font_weights"; enumerated once per type and run.
     */
    @Override
    public synchronized Map<String, Double> defaultFonts(String type) {
        String probe = type.equals("wild_cn") ? EasyCaptchaRunner.CHINESE : DIGITS + UPPER + LOWER + ARITH_SYMBOLS;
        String key = type.equals("wild_cn") ? "cn" : "latin";
        Map<String, Double> known = fontsByType.get(key);
        if (known == null) {
            known = new LinkedHashMap<>();
            String[] families = GraphicsEnvironment.getLocalGraphicsEnvironment()
                    .getAvailableFontFamilyNames(Locale.ROOT);
            Arrays.sort(families);
            for (String family : families) {
                double weight = settings().fontWeight(family);
                if (weight > 0 && new Font(family, Font.PLAIN, 24).canDisplayUpTo(probe) == -1) {
                    known.put(family, weight);
                }
            }
            if (known.isEmpty()) {
                throw new Common.UsageException(configPath + ": key \"font_weights\" leaves no installed font that "
                        + "can display " + type + " text");
            }
            fontsByType.put(key, known);
        }
        return known;
    }

    /**
     * Every size of the width and height grids whose aspect ratio is in range, weight 1 each, in an order shuffled
     * with the run seed: the planner's exact quotas then deal sizes uniformly over the grid, and a run smaller than
     * the grid still gets a seed-dependent spread of sizes.
     */
    @Override
    public String defaultSizes() {
        Settings s = settings();
        List<String> sizes = new ArrayList<>();
        for (int w = s.width[0]; w <= s.width[1]; w += s.widthStep) {
            for (int h = s.height[0]; h <= s.height[1]; h += s.heightStep) {
                double aspect = w / (double) h;
                if (aspect >= s.aspect[0] && aspect <= s.aspect[1]) {
                    sizes.add(w + "x" + h + ":1");
                }
            }
        }
        if (sizes.isEmpty()) {
            throw new Common.UsageException(configPath + ": keys \"width\", \"height\" and \"aspect\" leave no size");
        }
        Collections.shuffle(sizes, new Random(sizeSeed));
        return String.join(",", sizes);
    }

    // ---------------------------------------------------------------- one image

    /** Layout and colours of one image's text. */
    private record Glyphs(Shape[] shapes, int[] colours, float em) {}

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) throws IOException {
        Settings s = settings();
        int w = job.width();
        int h = job.height();
        String text;
        String answer = null;
        if (job.type().equals("wild_arith")) {
            String[] question = arithmetic(job.length(), rnd, s);
            text = question[0];
            answer = question[1];
        } else {
            String alphabet = alphabet(job.type());
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < job.length(); i++) {
                sb.append(alphabet.charAt(rnd.nextInt(alphabet.length())));
            }
            text = sb.toString();
        }

        // fonts: one family and style for the image, or one per character
        float em = Math.max(10, Math.round(h * uniform(rnd, s.fontHeight)));
        boolean mixed = rnd.nextDouble() < s.mixedFontsProbability;
        Font[] glyphFonts = new Font[text.length()];
        Set<String> used = new LinkedHashSet<>();
        for (int i = 0; i < text.length(); i++) {
            if (i == 0 || mixed) {
                String styleName = s.fontStyles.pick(rnd);
                Common.ChosenFont chosen = fonts.font(job.fonts().pick(rnd), Settings.STYLES.get(styleName),
                        Font.PLAIN, OUTLINE_SIZE, text, rnd);
                glyphFonts[i] = chosen.font();
                used.add(chosen.name() + ":" + styleName);
            } else {
                glyphFonts[i] = glyphFonts[0];
            }
        }

        // warp parameters first: their largest displacement sets the margins the layout keeps free
        String warp = s.warpWeights.pick(rnd);
        float[] dxByY = new float[h];
        float[] dyByX = new float[w];
        float kx = 0;
        float ky = 0;
        if (warp.equals("sine") || warp.equals("both")) {
            double ay = uniform(rnd, s.sineAmplitude) * h;
            double ax = uniform(rnd, s.sineAmplitude) * h * 0.5;
            double ly = uniform(rnd, s.sineWavelength) * w;
            double lx = uniform(rnd, s.sineWavelength) * h * 2;
            double py = rnd.nextDouble() * 2 * Math.PI;
            double px = rnd.nextDouble() * 2 * Math.PI;
            for (int x = 0; x < w; x++) {
                dyByX[x] = (float) (ay * Math.sin(2 * Math.PI * x / ly + py));
            }
            for (int y = 0; y < h; y++) {
                dxByY[y] = (float) (ax * Math.sin(2 * Math.PI * y / lx + px));
            }
        }
        if (warp.equals("perspective") || warp.equals("both")) {
            kx = (float) (uniform(rnd, s.perspectiveStrength) * (rnd.nextBoolean() ? 1 : -1));
            ky = (float) (uniform(rnd, s.perspectiveStrength) * 0.5 * (rnd.nextBoolean() ? 1 : -1));
        }
        double reachX = maxAbs(dxByY) + Math.abs(kx) * w / 4.0;
        double reachY = maxAbs(dyByX) + Math.abs(ky) * h / 4.0;
        int marginX = 2 + (int) Math.ceil(reachX);
        int marginY = 2 + (int) Math.ceil(reachY);
        boolean touchEdge = warp.equals("none") && rnd.nextDouble() < s.edgeTouchProbability;

        // background, scheme and text colours
        String background = s.backgroundWeights.pick(rnd);
        int strength = background.equals("solid") ? 0 : (int) Math.round(uniform(rnd, s.textureStrength));
        Scheme scheme = scheme(s.schemeWeights.pick(rnd), strength, text.length(), rnd, s);
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        int[] rgb = ((DataBufferInt) image.getRaster().getDataBuffer()).getData();
        drawBackground(background, image, rgb, scheme, strength, rnd);

        Glyphs glyphs = layout(text, glyphFonts, em, w, h, marginX, marginY, touchEdge, scheme.text, rnd, s);
        boolean outline = glyphs.em() >= 24 && rnd.nextDouble() < s.outlineProbability;

        // interference: each kind is drawn behind or over the text
        Interference behind = new Interference();
        Interference over = new Interference();
        planInterference(behind, over, rnd, s);
        float scale = Math.max(1f, glyphs.em() / 30f); // line widths and dot sizes grow with the text
        drawInterference(behind, image, rgb, scheme, scale, rnd, s);

        BufferedImage layer = new BufferedImage(w, h, BufferedImage.TYPE_INT_ARGB_PRE);
        Graphics2D g = smooth(layer);
        for (int i = 0; i < glyphs.shapes().length; i++) {
            g.setColor(new Color(glyphs.colours()[i]));
            if (outline) {
                g.setStroke(new BasicStroke(Math.max(1.2f, glyphs.em() * 0.06f)));
                g.draw(glyphs.shapes()[i]);
            } else {
                g.fill(glyphs.shapes()[i]);
            }
        }
        g.dispose();
        int[] ink = ((DataBufferInt) layer.getRaster().getDataBuffer()).getData();
        int[] box = inkBox(glyphs.shapes(), w, h, 2 + (int) Math.ceil(Math.max(reachX, reachY)));
        if (!warp.equals("none")) {
            ink = warp(ink, w, h, box, dxByY, dyByX, kx, ky);
        }
        String flags = clipFlags(ink, w, h);
        compositeOver(ink, rgb, w, box);

        drawInterference(over, image, rgb, scheme, scale, rnd, s);
        if (rnd.nextDouble() < s.speckleProbability) {
            speckle(rgb, uniform(rnd, s.speckleFraction), scheme, rnd);
        }
        if (rnd.nextDouble() < s.blurProbability) {
            int passes = h < 36 ? 1 : uniformInt(rnd, s.blurPasses);
            for (int p = 0; p < passes; p++) {
                blur(rgb, w, h);
            }
        }
        if (rnd.nextDouble() < s.noiseProbability) {
            addNoise(rgb, uniform(rnd, s.noiseSigma), rnd.nextBoolean(), rnd.nextLong());
        }
        byte[] png = rnd.nextDouble() < s.jpegProbability
                ? Common.png(Common.jpegRoundTrip(image, Math.round(uniform(rnd, s.jpegQuality) * 100) / 100f)) : Common.png(image);
        return new Common.Sample(png, "png", text, answer, String.join("+", used), flags);
    }

    /**
     * {@code operands} numbers joined by weighted operators plus a suffix ("=?" or "="); multiplication binds first.
     * With "arith_nonnegative_probability" the question is redrawn until its answer is not negative. Returns
     * {text, answer}.
     */
    static String[] arithmetic(int operands, Random rnd, Settings s) {
        if (operands < 2 || operands > 4) {
            throw new Common.UsageException("wild_arith: the length is the number of operands, 2..4, got "
                    + operands);
        }
        int max = operands == 2 ? s.arithMaxOperand : s.arithMaxOperandLong;
        boolean nonNegative = rnd.nextDouble() < s.arithNonNegativeProbability;
        int[] values = new int[operands];
        char[] operators = new char[operands - 1];
        long answer = 0;
        for (int attempt = 0; attempt < 100; attempt++) {
            for (int i = 0; i < operands; i++) {
                values[i] = rnd.nextInt(max + 1);
                if (i > 0) {
                    operators[i - 1] = s.arithOperators.pick(rnd).charAt(0);
                }
            }
            char[] forEvaluation = operators.clone();
            for (int i = 0; i < forEvaluation.length; i++) {
                forEvaluation[i] = forEvaluation[i] == '*' ? 'x' : forEvaluation[i];
            }
            answer = EasyCaptchaRunner.evaluate(values, forEvaluation);
            if (!nonNegative || answer >= 0) {
                break;
            }
        }
        StringBuilder sb = new StringBuilder().append(values[0]);
        for (int i = 0; i < operators.length; i++) {
            sb.append(operators[i]).append(values[i + 1]);
        }
        return new String[] {sb.append(s.arithSuffix.pick(rnd)).toString(), Long.toString(answer)};
    }

    /**
     * Places the glyph outlines: each character gets its own scale, stretch, shear and rotation about its centre
     * and a baseline offset, then follows the previous one at a spacing (negative overlaps); the whole word is
     * shrunk to fit inside the margins when needed, optionally spread over the free width, and put at a random spot
     * of what is left (touching a side when {@code touchEdge}).
     */
    static Glyphs layout(String text, Font[] fonts, float em, int w, int h, int marginX, int marginY,
            boolean touchEdge, int[] colours, Random rnd, Settings s) {
        FontRenderContext frc = new FontRenderContext(null, true, true);
        int n = text.length();
        Shape[] shapes = new Shape[n];
        Rectangle2D[] boxes = new Rectangle2D[n];
        double cursor = 0;
        double jitter = s.baselineJitterEm * em;
        for (int i = 0; i < n; i++) {
            Shape outline = AffineTransform.getScaleInstance(em / OUTLINE_SIZE, em / OUTLINE_SIZE)
                    .createTransformedShape(fonts[i].createGlyphVector(frc, text.substring(i, i + 1)).getOutline());
            Rectangle2D b = outline.getBounds2D();
            double scale = uniform(rnd, s.charScale);
            double stretch = uniform(rnd, s.charStretch);
            AffineTransform t = new AffineTransform();
            t.translate(b.getCenterX(), b.getCenterY());
            t.rotate(Math.toRadians(uniform(rnd, s.rotationDegrees)));
            t.shear(uniform(rnd, s.shear), 0);
            t.scale(scale * stretch, scale);
            t.translate(-b.getCenterX(), -b.getCenterY());
            Shape turned = t.createTransformedShape(outline);
            Rectangle2D tb = turned.getBounds2D();
            double dy = (rnd.nextDouble() * 2 - 1) * jitter;
            AffineTransform place = AffineTransform.getTranslateInstance(cursor - tb.getMinX(), dy);
            shapes[i] = place.createTransformedShape(turned);
            boxes[i] = shapes[i].getBounds2D();
            cursor = boxes[i].getMaxX() + uniform(rnd, s.spacingEm) * em;
        }
        Rectangle2D union = boxes[0].getBounds2D();
        for (Rectangle2D b : boxes) {
            union.add(b);
        }
        double availableW = w - 2.0 * marginX;
        double availableH = h - 2.0 * marginY;
        double fit = Math.min(1, Math.min(availableW / union.getWidth(), availableH / union.getHeight()));
        double slackX = Math.max(0, availableW - fit * union.getWidth());
        double slackY = Math.max(0, availableH - fit * union.getHeight());
        double gap = 0; // extra px between neighbours when the word is spread over the width
        if (n > 1 && rnd.nextDouble() < s.spreadProbability) {
            gap = slackX * uniform(rnd, s.spreadFraction) / (n - 1);
            slackX -= gap * (n - 1);
        }
        double left = marginX + rnd.nextDouble() * slackX;
        if (touchEdge) {
            left = rnd.nextBoolean() ? 0.2 : w - 0.8 - fit * union.getWidth() - gap * (n - 1);
        }
        double top = marginY + rnd.nextDouble() * slackY;
        for (int i = 0; i < n; i++) {
            AffineTransform a = AffineTransform.getTranslateInstance(left + gap * i, top);
            a.scale(fit, fit);
            a.translate(-union.getMinX(), -union.getMinY());
            shapes[i] = a.createTransformedShape(shapes[i]);
        }
        return new Glyphs(shapes, colours, (float) (em * fit));
    }

    // ---------------------------------------------------------------- colours

    /** Background colour, its texture strength and the text colours (one per character). */
    private record Scheme(int background, int[] text, int strength) {}

    static int luma(int rgb) {
        return (299 * (rgb >> 16 & 255) + 587 * (rgb >> 8 & 255) + 114 * (rgb & 255)) / 1000;
    }

    /** {@code rgb} mixed with white or black until its luma is {@code target} (hue kept). */
    static int withLuma(int rgb, int target) {
        target = Math.max(0, Math.min(255, target));
        int l = luma(rgb);
        int r = rgb >> 16 & 255;
        int g = rgb >> 8 & 255;
        int b = rgb & 255;
        if (target > l) {
            double t = (target - l) / (255.0 - l);
            r += (int) Math.round((255 - r) * t);
            g += (int) Math.round((255 - g) * t);
            b += (int) Math.round((255 - b) * t);
        } else if (l > 0) {
            double t = target / (double) l;
            r = (int) Math.round(r * t);
            g = (int) Math.round(g * t);
            b = (int) Math.round(b * t);
        }
        return Math.min(255, r) << 16 | Math.min(255, g) << 8 | Math.min(255, b);
    }

    /** A random hue at a saturation drawn from [0, maxSaturation], brought to luma {@code target}. */
    static int colour(Random rnd, double maxSaturation, int target) {
        return withLuma(Color.HSBtoRGB(rnd.nextFloat(), (float) (rnd.nextDouble() * maxSaturation), 1f) & 0xFFFFFF,
                target);
    }

    static int between(Random rnd, int lo, int hi) {
        return hi > lo ? lo + rnd.nextInt(hi - lo + 1) : lo;
    }

    /**
     * The colours of a scheme. The text keeps at least "min_contrast" luma from the darkest (or brightest) part of
     * the background, whose texture spreads {@code strength} around its base colour; "low_contrast" keeps a smaller
     * difference drawn from its own range.
     */
    static Scheme scheme(String kind, int strength, int n, Random rnd, Settings s) {
        int half = (strength + 1) / 2;
        int[] text = new int[n];
        int background;
        switch (kind) {
            case "light_on_dark" -> {
                int bg = between(rnd, 0, 80);
                background = colour(rnd, 0.6, bg);
                int lo = Math.min(255, bg + half + s.minContrast);
                Arrays.fill(text, colour(rnd, 0.7, between(rnd, lo, 255)));
            }
            case "low_contrast" -> {
                boolean dark = rnd.nextDouble() < 0.25;
                int bg = dark ? between(rnd, 20, 90) : between(rnd, 130, 245);
                background = colour(rnd, 0.4, bg);
                int diff = (int) Math.round(uniform(rnd, s.lowContrast)) + half;
                int tl = dark || bg - diff < 0 ? Math.min(255, bg + diff) : bg - diff;
                Arrays.fill(text, colour(rnd, 0.8, tl));
            }
            default -> { // dark_on_light and per_char; most real captchas are near white, so half of these are
                int bg = rnd.nextBoolean() ? between(rnd, 235, 255) : between(rnd, 170, 255);
                background = colour(rnd, 0.35, bg);
                int hi = Math.max(0, bg - half - s.minContrast);
                boolean perChar = kind.equals("per_char");
                int one = colour(rnd, 0.8, between(rnd, 0, hi));
                for (int i = 0; i < n; i++) {
                    text[i] = perChar ? colour(rnd, 1.0, between(rnd, hi / 3, hi)) : one;
                }
            }
        }
        return new Scheme(background, text, strength);
    }

    /** {@code rgb} with {@code d} added to every channel (clamped): a luma shift that keeps the hue. */
    static int shift(int rgb, int d) {
        int r = Math.max(0, Math.min(255, (rgb >> 16 & 255) + d));
        int g = Math.max(0, Math.min(255, (rgb >> 8 & 255) + d));
        int b = Math.max(0, Math.min(255, (rgb & 255) + d));
        return r << 16 | g << 8 | b;
    }

    static int lerp(int a, int b, int t256) {
        int r = (a >> 16 & 255) + (((b >> 16 & 255) - (a >> 16 & 255)) * t256 >> 8);
        int g = (a >> 8 & 255) + (((b >> 8 & 255) - (a >> 8 & 255)) * t256 >> 8);
        int bl = (a & 255) + (((b & 255) - (a & 255)) * t256 >> 8);
        return r << 16 | g << 8 | bl;
    }

    // ---------------------------------------------------------------- backgrounds

    /** Solid, linear or radial gradient, value noise, stripes or faint random shapes around the base colour. */
    static void drawBackground(String kind, BufferedImage image, int[] rgb, Scheme scheme, int strength,
            Random rnd) {
        int w = image.getWidth();
        int h = image.getHeight();
        int base = scheme.background();
        int half = strength / 2;
        switch (kind) {
            case "linear", "radial" -> {
                int from = shift(base, -half);
                int to = withLuma(colour(rnd, 0.35, luma(base)), luma(base) + half);
                if (rnd.nextBoolean()) {
                    int t = from;
                    from = to;
                    to = t;
                }
                double angle = rnd.nextDouble() * 2 * Math.PI;
                double cos = Math.cos(angle);
                double sin = Math.sin(angle);
                double cx = rnd.nextDouble() * w;
                double cy = rnd.nextDouble() * h;
                double reach = kind.equals("linear") ? Math.abs(w * cos) + Math.abs(h * sin)
                        : Math.sqrt(sq(Math.max(cx, w - cx)) + sq(Math.max(cy, h - cy)));
                for (int y = 0, i = 0; y < h; y++) {
                    for (int x = 0; x < w; x++, i++) {
                        double t = kind.equals("linear") ? ((x - w / 2.0) * cos + (y - h / 2.0) * sin) / reach + 0.5
                                : Math.sqrt(sq(x - cx) + sq(y - cy)) / reach;
                        rgb[i] = lerp(from, to, (int) (Math.max(0, Math.min(1, t)) * 256));
                    }
                }
            }
            case "noise" -> {
                int cell = between(rnd, 3, 12);
                int gw = w / cell + 2;
                int gh = h / cell + 2;
                int[] grid = new int[gw * gh];
                for (int k = 0; k < grid.length; k++) {
                    grid[k] = rnd.nextInt(2 * half + 1) - half;
                }
                for (int y = 0, i = 0; y < h; y++) {
                    int gy = y / cell;
                    int fy = (y % cell) * 256 / cell;
                    for (int x = 0; x < w; x++, i++) {
                        int gx = x / cell;
                        int fx = (x % cell) * 256 / cell;
                        int k = gy * gw + gx;
                        int top = grid[k] * (256 - fx) + grid[k + 1] * fx;
                        int bottom = grid[k + gw] * (256 - fx) + grid[k + gw + 1] * fx;
                        rgb[i] = shift(base, (top * (256 - fy) + bottom * fy) >> 16);
                    }
                }
            }
            case "stripes" -> {
                double angle = rnd.nextDouble() * Math.PI;
                double period = 4 + rnd.nextDouble() * 12;
                boolean hard = rnd.nextBoolean();
                double cos = Math.cos(angle) / period;
                double sin = Math.sin(angle) / period;
                for (int y = 0, i = 0; y < h; y++) {
                    for (int x = 0; x < w; x++, i++) {
                        double phase = x * cos + y * sin;
                        double f = phase - Math.floor(phase);
                        int d = hard ? (f < 0.5 ? half : -half) : (int) (half * (1 - 4 * Math.abs(f - 0.5)));
                        rgb[i] = shift(base, d);
                    }
                }
            }
            case "shapes" -> {
                Arrays.fill(rgb, base);
                Graphics2D g = smooth(image);
                int count = between(rnd, 6, 24);
                for (int k = 0; k < count; k++) {
                    int c = withLuma(colour(rnd, 0.5, luma(base)), luma(base) + between(rnd, -half, half));
                    g.setColor(new Color(c));
                    g.setComposite(AlphaComposite.getInstance(AlphaComposite.SRC_OVER, 0.4f + 0.6f * rnd.nextFloat()));
                    double sw = (0.05 + 0.4 * rnd.nextDouble()) * w;
                    double sh = (0.1 + 0.6 * rnd.nextDouble()) * h;
                    double x = rnd.nextDouble() * w - sw / 2;
                    double y = rnd.nextDouble() * h - sh / 2;
                    g.fill(rnd.nextBoolean() ? new Ellipse2D.Double(x, y, sw, sh) : new Rectangle2D.Double(x, y, sw, sh));
                }
                g.dispose();
            }
            default -> Arrays.fill(rgb, base);
        }
    }

    // ---------------------------------------------------------------- interference

    /** What one interference layer (behind or over the text) holds. */
    private static final class Interference {
        int lines;
        int curves;
        double dotsPerKpx;
        boolean grid;
    }

    static void planInterference(Interference behind, Interference over, Random rnd, Settings s) {
        if (rnd.nextDouble() < s.linesProbability) {
            (rnd.nextDouble() < s.interferenceOverText ? over : behind).lines = uniformInt(rnd, s.lines);
        }
        if (rnd.nextDouble() < s.curvesProbability) {
            (rnd.nextDouble() < s.interferenceOverText ? over : behind).curves = uniformInt(rnd, s.curves);
        }
        if (rnd.nextDouble() < s.dotsProbability) {
            (rnd.nextDouble() < s.interferenceOverText ? over : behind).dotsPerKpx = uniform(rnd, s.dotsPerKpx);
        }
        behind.grid = rnd.nextDouble() < s.gridProbability; // a grid over the text would hide thin strokes
    }

    /** A colour for one stroke of interference: a text colour, any colour apart from the background, or a faint one. */
    static int interferenceColour(Scheme scheme, Random rnd, Settings s) {
        int bg = luma(scheme.background());
        return switch (s.interferenceColours.pick(rnd)) {
            case "text" -> scheme.text()[rnd.nextInt(scheme.text().length)];
            case "faint" -> colour(rnd, 0.5, bg + (bg > 127 ? -1 : 1) * between(rnd, 20, 50));
            default -> colour(rnd, 1.0, bg > 127 ? between(rnd, 0, bg - 60) : between(rnd, bg + 60, 255));
        };
    }

    static void drawInterference(Interference layer, BufferedImage image, int[] rgb, Scheme scheme, float scale,
            Random rnd, Settings s) {
        int w = image.getWidth();
        int h = image.getHeight();
        if (layer.grid) {
            int bg = luma(scheme.background());
            int colour = colour(rnd, 0.8, bg + (bg > 127 ? -1 : 1) * between(rnd, 25, 70));
            drawGrid(rgb, w, h, colour, uniformInt(rnd, s.gridSpacing), rnd);
        }
        if (layer.lines == 0 && layer.curves == 0 && layer.dotsPerKpx == 0) {
            return;
        }
        Graphics2D g = smooth(image);
        for (int k = 0; k < layer.lines; k++) {
            g.setColor(new Color(interferenceColour(scheme, rnd, s)));
            g.setStroke(new BasicStroke((float) uniform(rnd, s.lineWidth) * scale, BasicStroke.CAP_ROUND,
                    BasicStroke.JOIN_ROUND));
            g.draw(new Line2D.Double(rnd.nextDouble() * w / 3, rnd.nextDouble() * h, w - rnd.nextDouble() * w / 3,
                    rnd.nextDouble() * h));
        }
        for (int k = 0; k < layer.curves; k++) {
            g.setColor(new Color(interferenceColour(scheme, rnd, s)));
            g.setStroke(new BasicStroke((float) uniform(rnd, s.lineWidth) * scale, BasicStroke.CAP_ROUND,
                    BasicStroke.JOIN_ROUND));
            double x1 = rnd.nextDouble() * w / 4;
            double x2 = w - rnd.nextDouble() * w / 4;
            int shape = rnd.nextInt(3);
            if (shape == 0) {
                g.draw(new CubicCurve2D.Double(x1, rnd.nextDouble() * h, x1 + (x2 - x1) / 3, rnd.nextDouble() * h * 1.6
                        - h * 0.3, x1 + 2 * (x2 - x1) / 3, rnd.nextDouble() * h * 1.6 - h * 0.3, x2,
                        rnd.nextDouble() * h));
            } else if (shape == 1) {
                g.draw(new QuadCurve2D.Double(x1, rnd.nextDouble() * h, (x1 + x2) / 2, rnd.nextDouble() * h * 2 - h / 2.0,
                        x2, rnd.nextDouble() * h));
            } else {
                double aw = (0.3 + 0.9 * rnd.nextDouble()) * w;
                double ah = (0.5 + 1.5 * rnd.nextDouble()) * h;
                g.draw(new Arc2D.Double(rnd.nextDouble() * w - aw / 2, rnd.nextDouble() * h - ah / 2, aw, ah,
                        rnd.nextDouble() * 360, 60 + rnd.nextDouble() * 200, Arc2D.OPEN));
            }
        }
        int dots = (int) Math.round(layer.dotsPerKpx * w * h / 1000);
        for (int k = 0; k < dots; k++) {
            g.setColor(new Color(interferenceColour(scheme, rnd, s)));
            double r = uniform(rnd, s.dotRadius) * scale;
            g.fill(new Ellipse2D.Double(rnd.nextDouble() * w - r, rnd.nextDouble() * h - r, 2 * r, 2 * r));
        }
        g.dispose();
    }

    /** One-pixel rows and columns every {@code spacing} px, blended at a random opacity. */
    static void drawGrid(int[] rgb, int w, int h, int colour, int spacing, Random rnd) {
        int alpha = between(rnd, 90, 256);
        int ox = rnd.nextInt(spacing);
        int oy = rnd.nextInt(spacing);
        boolean rows = rnd.nextDouble() < 0.85;
        boolean columns = !rows || rnd.nextDouble() < 0.85;
        for (int y = 0, i = 0; y < h; y++) {
            boolean row = rows && (y + oy) % spacing == 0;
            for (int x = 0; x < w; x++, i++) {
                if (row || columns && (x + ox) % spacing == 0) {
                    rgb[i] = lerp(rgb[i], colour, alpha);
                }
            }
        }
    }

    /** Single pixels set to a text colour, black or white. */
    static void speckle(int[] rgb, double fraction, Scheme scheme, Random rnd) {
        int count = (int) Math.round(fraction * rgb.length);
        for (int k = 0; k < count; k++) {
            int pick = rnd.nextInt(3);
            rgb[rnd.nextInt(rgb.length)] = pick == 0 ? scheme.text()[rnd.nextInt(scheme.text().length)]
                    : pick == 1 ? 0x000000 : 0xFFFFFF;
        }
    }

    // ---------------------------------------------------------------- pixel work (int arrays)

    /**
     * The premultiplied text layer resampled bilinearly: output (x, y) reads the source at x + dxByY[y] + kx (x - cx)
     * (y - cy) / h and y + dyByX[x] + ky (y - cy) (x - cx) / w, a sine wave plus a keystone-like perspective.
     */
    static int[] warp(int[] src, int w, int h, int[] box, float[] dxByY, float[] dyByX, float kx, float ky) {
        int[] out = new int[src.length];
        float cx = w / 2f;
        float cy = h / 2f;
        for (int y = box[1]; y < box[3]; y++) {
            for (int x = box[0], i = y * w + x; x < box[2]; x++, i++) {
                float fx = x + dxByY[y] + kx * (x - cx) * (y - cy) / h;
                float fy = y + dyByX[x] + ky * (y - cy) * (x - cx) / w;
                int sx = (int) Math.floor(fx);
                int sy = (int) Math.floor(fy);
                if (sx < -1 || sy < -1 || sx >= w || sy >= h) {
                    continue;
                }
                int nw;
                int ne;
                int sw;
                int se;
                if (sx >= 0 && sy >= 0 && sx < w - 1 && sy < h - 1) {
                    int k = sy * w + sx;
                    nw = src[k];
                    ne = src[k + 1];
                    sw = src[k + w];
                    se = src[k + w + 1];
                } else {
                    nw = at(src, sx, sy, w, h);
                    ne = at(src, sx + 1, sy, w, h);
                    sw = at(src, sx, sy + 1, w, h);
                    se = at(src, sx + 1, sy + 1, w, h);
                }
                if ((nw | ne | sw | se) == 0) {
                    continue;
                }
                int ax = (int) ((fx - sx) * 256);
                int ay = (int) ((fy - sy) * 256);
                int result = 0;
                for (int shift = 0; shift < 32; shift += 8) {
                    int top = (nw >>> shift & 255) * (256 - ax) + (ne >>> shift & 255) * ax;
                    int bottom = (sw >>> shift & 255) * (256 - ax) + (se >>> shift & 255) * ax;
                    result |= ((top * (256 - ay) + bottom * ay) >>> 16 & 255) << shift;
                }
                out[i] = result;
            }
        }
        return out;
    }

    private static int at(int[] src, int x, int y, int w, int h) {
        return x < 0 || y < 0 || x >= w || y >= h ? 0 : src[y * w + x];
    }

    /** "edge_clip" when text ink reaches the leftmost or rightmost column, "v_clip" the top or bottom row. */
    static String clipFlags(int[] ink, int w, int h) {
        boolean sides = false;
        boolean ends = false;
        for (int y = 0; y < h && !sides; y++) {
            sides = ink[y * w] >>> 24 > EDGE_ALPHA || ink[y * w + w - 1] >>> 24 > EDGE_ALPHA;
        }
        for (int x = 0; x < w && !ends; x++) {
            ends = ink[x] >>> 24 > EDGE_ALPHA || ink[(h - 1) * w + x] >>> 24 > EDGE_ALPHA;
        }
        return sides && ends ? "edge_clip,v_clip" : sides ? "edge_clip" : ends ? "v_clip" : "";
    }

    /**
     * The pixel box {x0, y0, x1, y1} (end exclusive) that holds every glyph's ink, grown by {@code pad} (the warp's
     * reach) and cut to the canvas: the only pixels the warp and the compositing need to visit.
     */
    static int[] inkBox(Shape[] shapes, int w, int h, int pad) {
        Rectangle2D union = shapes[0].getBounds2D();
        for (Shape shape : shapes) {
            union.add(shape.getBounds2D());
        }
        return new int[] {Math.max(0, (int) Math.floor(union.getMinX()) - pad),
            Math.max(0, (int) Math.floor(union.getMinY()) - pad), Math.min(w, (int) Math.ceil(union.getMaxX()) + pad),
            Math.min(h, (int) Math.ceil(union.getMaxY()) + pad)};
    }

    /** Premultiplied ARGB {@code ink} over opaque RGB {@code rgb} within {@code box}, in place. */
    static void compositeOver(int[] ink, int[] rgb, int w, int[] box) {
        for (int y = box[1]; y < box[3]; y++) {
            for (int i = y * w + box[0], end = y * w + box[2]; i < end; i++) {
                over(ink[i], rgb, i);
            }
        }
    }

    private static void over(int p, int[] rgb, int i) {
        int a = p >>> 24;
        if (a == 0) {
            return;
        }
        int keep = 255 - a;
        int d = rgb[i];
        int r = (p >> 16 & 255) + ((d >> 16 & 255) * keep + 127) / 255;
        int g = (p >> 8 & 255) + ((d >> 8 & 255) * keep + 127) / 255;
        int b = (p & 255) + ((d & 255) * keep + 127) / 255;
        rgb[i] = Math.min(255, r) << 16 | Math.min(255, g) << 8 | Math.min(255, b);
    }

    /** One pass of the separable [1 2 1] / 4 kernel, edges clamped. */
    static void blur(int[] rgb, int w, int h) {
        int[] tmp = new int[rgb.length];
        for (int y = 0; y < h; y++) {
            int row = y * w;
            for (int x = 0; x < w; x++) {
                tmp[row + x] = mix121(rgb[row + Math.max(0, x - 1)], rgb[row + x], rgb[row + Math.min(w - 1, x + 1)]);
            }
        }
        for (int y = 0; y < h; y++) {
            int up = Math.max(0, y - 1) * w;
            int down = Math.min(h - 1, y + 1) * w;
            int row = y * w;
            for (int x = 0; x < w; x++) {
                rgb[row + x] = mix121(tmp[up + x], tmp[row + x], tmp[down + x]);
            }
        }
    }

    private static int mix121(int a, int b, int c) {
        int r = ((a >> 16 & 255) + 2 * (b >> 16 & 255) + (c >> 16 & 255) + 2) >> 2;
        int g = ((a >> 8 & 255) + 2 * (b >> 8 & 255) + (c >> 8 & 255) + 2) >> 2;
        int bl = ((a & 255) + 2 * (b & 255) + (c & 255) + 2) >> 2;
        return r << 16 | g << 8 | bl;
    }

    /**
     * Roughly Gaussian noise of standard deviation {@code sigma} grey levels (a sum of four uniform bytes from a
     * xorshift generator seeded by the image's Random), the same on every channel or per channel.
     */
    static void addNoise(int[] rgb, double sigma, boolean perChannel, long seed) {
        long state = seed == 0 ? 0x9E3779B97F4A7C15L : seed;
        int scale = (int) Math.round(sigma * 65536 / 147.8); // the sum of four bytes has standard deviation 147.8
        for (int i = 0; i < rgb.length; i++) {
            state ^= state << 13;
            state ^= state >>> 7;
            state ^= state << 17;
            int p = rgb[i];
            int r;
            int g;
            int b;
            if (perChannel) {
                r = (p >> 16 & 255) + noise(state, scale);
                g = (p >> 8 & 255) + noise(state >>> 32 | state << 32, scale);
                b = (p & 255) + noise(Long.rotateLeft(state, 16), scale);
            } else {
                int d = noise(state, scale);
                r = (p >> 16 & 255) + d;
                g = (p >> 8 & 255) + d;
                b = (p & 255) + d;
            }
            rgb[i] = clamp(r) << 16 | clamp(g) << 8 | clamp(b);
        }
    }

    private static int noise(long bits, int scale) {
        int sum = (int) (bits & 255) + (int) (bits >>> 8 & 255) + (int) (bits >>> 16 & 255) + (int) (bits >>> 24 & 255);
        return (sum - 510) * scale >> 16;
    }

    private static int clamp(int v) {
        return v < 0 ? 0 : v > 255 ? 255 : v;
    }

    // ---------------------------------------------------------------- helpers

    static Graphics2D smooth(BufferedImage image) {
        Graphics2D g = image.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setRenderingHint(RenderingHints.KEY_STROKE_CONTROL, RenderingHints.VALUE_STROKE_PURE);
        return g;
    }

    static double uniform(Random rnd, double[] range) {
        return range[0] + rnd.nextDouble() * (range[1] - range[0]);
    }

    static int uniformInt(Random rnd, int[] range) {
        return between(rnd, range[0], range[1]);
    }

    static double sq(double v) {
        return v * v;
    }

    static double maxAbs(float[] values) {
        double m = 0;
        for (float v : values) {
            m = Math.max(m, Math.abs(v));
        }
        return m;
    }

    // ---------------------------------------------------------------- config_wild.json

    /** Every parameter of config_wild.json, checked once: a missing, unknown or bad key fails naming the key. */
    static final class Settings {
        static final Map<String, Integer> STYLES = Map.of("plain", Font.PLAIN, "bold", Font.BOLD, "italic",
                Font.ITALIC, "bold_italic", Font.BOLD | Font.ITALIC);

        private final Path file;
        private final Map<?, ?> root;
        private final Set<String> read = new LinkedHashSet<>();

        final Map<String, Double> mix;
        final int[] width;
        final int[] height;
        final double[] aspect;
        final int widthStep;
        final int heightStep;
        final Map<String, Double> lengths;
        final Map<String, Double> cnLengths;
        final Map<String, Double> arithOperands;
        final String excludeChars;
        final List<Pattern> fontPatterns = new ArrayList<>();
        final List<Double> fontPatternWeights = new ArrayList<>();
        final Common.Weighted fontStyles;
        final double mixedFontsProbability;
        final double[] fontHeight;
        final double[] charScale;
        final double[] charStretch;
        final double[] rotationDegrees;
        final double[] shear;
        final double[] spacingEm;
        final double baselineJitterEm;
        final double spreadProbability;
        final double[] spreadFraction;
        final double edgeTouchProbability;
        final double outlineProbability;
        final Common.Weighted warpWeights;
        final double[] sineAmplitude;
        final double[] sineWavelength;
        final double[] perspectiveStrength;
        final Common.Weighted schemeWeights;
        final int minContrast;
        final double[] lowContrast;
        final Common.Weighted backgroundWeights;
        final double[] textureStrength;
        final double linesProbability;
        final int[] lines;
        final double curvesProbability;
        final int[] curves;
        final double[] lineWidth;
        final double dotsProbability;
        final double[] dotsPerKpx;
        final double[] dotRadius;
        final double speckleProbability;
        final double[] speckleFraction;
        final double gridProbability;
        final int[] gridSpacing;
        final double interferenceOverText;
        final Common.Weighted interferenceColours;
        final double blurProbability;
        final int[] blurPasses;
        final double noiseProbability;
        final double[] noiseSigma;
        final double jpegProbability;
        final double[] jpegQuality;
        final Common.Weighted arithOperators;
        final Common.Weighted arithSuffix;
        final int arithMaxOperand;
        final int arithMaxOperandLong;
        final double arithNonNegativeProbability;

        static Settings load(Path file) {
            String text;
            try {
                text = Files.readString(file, StandardCharsets.UTF_8);
            } catch (NoSuchFileException e) {
                throw new Common.UsageException("wild config not found: " + file + " (pass --wild-config FILE)");
            } catch (IOException e) {
                throw new Common.UsageException("cannot read wild config " + file + ": " + e.getMessage());
            }
            Object parsed;
            try {
                parsed = Common.Json.parse(text);
            } catch (IllegalArgumentException e) {
                throw new Common.UsageException("invalid wild config " + file + ": " + e.getMessage());
            }
            if (!(parsed instanceof Map<?, ?> map)) {
                throw new Common.UsageException("invalid wild config " + file + ": top level must be an object");
            }
            return new Settings(file, map);
        }

        private Settings(Path file, Map<?, ?> root) {
            this.file = file;
            this.root = root;
            mix = weights("mix", null);
            width = intRange("width", 16, 2000);
            height = intRange("height", 16, 1000);
            aspect = range("aspect", 0.1, 100);
            widthStep = (int) integer("width_step", 1, 1000);
            heightStep = (int) integer("height_step", 1, 1000);
            lengths = lengthWeights("lengths", 1, 16);
            cnLengths = lengthWeights("cn_lengths", 1, 16);
            arithOperands = lengthWeights("arith_operands", 2, 4);
            excludeChars = string("exclude_chars");
            Map<String, Double> patterns = weights("font_weights", null);
            patterns.forEach((glob, weight) -> {
                fontPatterns.add(glob(glob));
                fontPatternWeights.add(weight);
            });
            fontStyles = picker("font_styles", STYLES.keySet());
            mixedFontsProbability = probability("mixed_fonts_probability");
            fontHeight = range("font_height", 0.1, 1.5);
            charScale = range("char_scale", 0.3, 3);
            charStretch = range("char_stretch", 0.3, 3);
            rotationDegrees = range("rotation_degrees", -90, 90);
            shear = range("shear", -1, 1);
            spacingEm = range("spacing_em", -0.5, 2);
            baselineJitterEm = number("baseline_jitter_em", 0, 1);
            spreadProbability = probability("spread_probability");
            spreadFraction = range("spread_fraction", 0, 1);
            edgeTouchProbability = probability("edge_touch_probability");
            outlineProbability = probability("outline_probability");
            warpWeights = picker("warp_weights", Set.of("none", "sine", "perspective", "both"));
            sineAmplitude = range("sine_amplitude", 0, 0.5);
            sineWavelength = range("sine_wavelength", 0.05, 20);
            perspectiveStrength = range("perspective_strength", 0, 1);
            schemeWeights = picker("scheme_weights", Set.of("dark_on_light", "light_on_dark", "per_char",
                    "low_contrast"));
            minContrast = (int) integer("min_contrast", 0, 255);
            lowContrast = range("low_contrast", 0, 255);
            backgroundWeights = picker("background_weights", Set.of("solid", "linear", "radial", "noise", "stripes",
                    "shapes"));
            textureStrength = range("texture_strength", 0, 255);
            linesProbability = probability("lines_probability");
            lines = intRange("lines", 0, 100);
            curvesProbability = probability("curves_probability");
            curves = intRange("curves", 0, 100);
            lineWidth = range("line_width", 0.1, 20);
            dotsProbability = probability("dots_probability");
            dotsPerKpx = range("dots_per_kpx", 0, 100);
            dotRadius = range("dot_radius", 0.1, 20);
            speckleProbability = probability("speckle_probability");
            speckleFraction = range("speckle_fraction", 0, 0.5);
            gridProbability = probability("grid_probability");
            gridSpacing = intRange("grid_spacing", 2, 200);
            interferenceOverText = probability("interference_over_text");
            interferenceColours = picker("interference_colours", Set.of("text", "random", "faint"));
            blurProbability = probability("blur_probability");
            blurPasses = intRange("blur_passes", 1, 10);
            noiseProbability = probability("noise_probability");
            noiseSigma = range("noise_sigma", 0, 128);
            jpegProbability = probability("jpeg_probability");
            jpegQuality = range("jpeg_quality", 0.05, 1);
            arithOperators = picker("arith_operators", Set.of("+", "-", "*", "x"));
            arithSuffix = picker("arith_suffix", Set.of("=?", "="));
            arithMaxOperand = (int) integer("arith_max_operand", 1, 99);
            arithMaxOperandLong = (int) integer("arith_max_operand_long", 1, 99);
            arithNonNegativeProbability = probability("arith_nonnegative_probability");
            for (Object key : root.keySet()) {
                if (!read.contains(String.valueOf(key))) {
                    throw new Common.UsageException(file + ": unknown key \"" + key + "\"; known keys: "
                            + String.join(", ", read));
                }
            }
        }

        /** The weight of the first "font_weights" pattern that matches {@code family} (case-insensitive), else 0. */
        double fontWeight(String family) {
            for (int i = 0; i < fontPatterns.size(); i++) {
                if (fontPatterns.get(i).matcher(family).matches()) {
                    return fontPatternWeights.get(i);
                }
            }
            return 0;
        }

        private static Pattern glob(String glob) {
            List<String> parts = new ArrayList<>();
            for (String part : glob.split("\\*", -1)) {
                parts.add(Pattern.quote(part));
            }
            return Pattern.compile(String.join(".*", parts), Pattern.CASE_INSENSITIVE | Pattern.UNICODE_CASE);
        }

        private Common.UsageException bad(String key, String what) {
            return new Common.UsageException(file + ": key \"" + key + "\" " + what);
        }

        private Object value(String key) {
            read.add(key);
            if (!root.containsKey(key)) {
                throw bad(key, "is missing (every key of " + DEFAULT_CONFIG + " is required)");
            }
            return root.get(key);
        }

        private double number(String key, double min, double max) {
            if (!(value(key) instanceof Double d) || d < min || d > max) {
                throw bad(key, "must be a number in " + Common.fmt(min) + ".." + Common.fmt(max) + ", got "
                        + root.get(key));
            }
            return d;
        }

        private double integer(String key, double min, double max) {
            double d = number(key, min, max);
            if (d != Math.rint(d)) {
                throw bad(key, "must be an integer, got " + root.get(key));
            }
            return d;
        }

        private double probability(String key) {
            return number(key, 0, 1);
        }

        private String string(String key) {
            if (!(value(key) instanceof String s)) {
                throw bad(key, "must be a string, got " + root.get(key));
            }
            return s;
        }

        private double[] range(String key, double min, double max) {
            if (!(value(key) instanceof List<?> list) || list.size() != 2 || !(list.get(0) instanceof Double lo)
                    || !(list.get(1) instanceof Double hi) || lo > hi || lo < min || hi > max) {
                throw bad(key, "must be [low, high] with " + Common.fmt(min) + " <= low <= high <= " + Common.fmt(max)
                        + ", got " + root.get(key));
            }
            return new double[] {lo, hi};
        }

        private int[] intRange(String key, int min, int max) {
            double[] r = range(key, min, max);
            if (r[0] != Math.rint(r[0]) || r[1] != Math.rint(r[1])) {
                throw bad(key, "must hold integers, got " + root.get(key));
            }
            return new int[] {(int) r[0], (int) r[1]};
        }

        /** An object of non-negative weights with at least one positive; {@code names} (or null) lists the keys. */
        private Map<String, Double> weights(String key, Set<String> names) {
            if (!(value(key) instanceof Map<?, ?> m) || m.isEmpty()) {
                throw bad(key, "must be an object of weights, got " + root.get(key));
            }
            Map<String, Double> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                String name = String.valueOf(e.getKey());
                if (names != null && !names.contains(name)) {
                    throw bad(key, "has unknown name '" + name + "'; known: " + String.join(", ", new java.util.TreeSet<>(names)));
                }
                if (!(e.getValue() instanceof Double d) || d < 0) {
                    throw bad(key, "weight of '" + name + "' must be a number >= 0, got " + e.getValue());
                }
                out.put(name, d);
            }
            if (out.values().stream().noneMatch(v -> v > 0)) {
                throw bad(key, "needs at least one positive weight");
            }
            return out;
        }

        private Common.Weighted picker(String key, Set<String> names) {
            return new Common.Weighted(weights(key, names));
        }

        private Map<String, Double> lengthWeights(String key, int min, int max) {
            Map<String, Double> m = weights(key, null);
            for (String name : m.keySet()) {
                int n;
                try {
                    n = Integer.parseInt(name);
                } catch (NumberFormatException e) {
                    throw bad(key, "has a non-integer length '" + name + "'");
                }
                if (n < min || n > max) {
                    throw bad(key, "length " + n + " is outside " + min + ".." + max);
                }
            }
            return m;
        }
    }
}
