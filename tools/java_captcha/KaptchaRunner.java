import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.font.FontRenderContext;
import java.awt.font.GlyphVector;
import java.awt.geom.Rectangle2D;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferByte;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The "kaptcha" family: Google Kaptcha 2.3.2's {@code DefaultKaptcha} as sites configure it, saved as PNG at the
 * configured size. Every type keeps the library's defaults where it sets nothing: bold "Arial,Courier" (Dialog and
 * Monospaced on Linux, one picked per character), black text, 2 px between characters, black noise curves, a light
 * grey to white diagonal gradient and a 1-px black border.
 * <ul>
 *   <li>{@code default}: no properties at all: 200x50, 5 of {@code abcde2345678gfynmnpwx}, size 40, WaterRipple,
 *   DefaultNoise.</li>
 *   <li>{@code ruoyi_char}: RuoYi's character captcha bean: 160x60, 4 characters, size 38, ShadowGimpy.</li>
 *   <li>{@code site_mix}: settings drawn per image: 100-200 x 30-60, digits or one of two 32-character sets,
 *   DefaultNoise or NoNoise, WaterRipple, ShadowGimpy or FishEyeGimpy, font size 0.6-0.8 of the height.</li>
 * </ul>
 * The image size comes from the type, never from {@code --sizes}. meta.tsv's font column records the drawn settings
 * as {@code fonts;size=N;chars=NAME;noise=IMPL;obsc=IMPL}; its flags are {@code edge_clip} and {@code v_clip}.
 */
public final class KaptchaRunner implements Common.Family {
    static final String DEFAULT_CHARS = "abcde2345678gfynmnpwx"; // Config's default character string
    static final String DIGITS = "0123456789";
    static final String LOWER32 = "abcdefghijkmnpqrstuvwxyz23456789";
    static final String UPPER32 = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    static final Color BACKGROUND_FROM = Color.LIGHT_GRAY; // Config's default gradient, top left to bottom right
    static final Color BACKGROUND_TO = Color.WHITE;
    static final int CHAR_SPACE = 2; // Config's default kaptcha.textproducer.char.space
    static final int EDGE_STRIP = 2; // text ink this close to the left or right side: edge_clip, as KaptchaTextRunner
    static final double V_CLIP_SHARE = 0.1; // a glyph losing more of its ink than this off the top or bottom: v_clip

    /** One image's Kaptcha configuration; {@code charsName} is what meta.tsv records for {@code chars}. */
    record Settings(int width, int height, String charsName, String chars, int fontSize, boolean noise,
            String obscurificator) {}

    public static void main(String[] args) {
        Common.main(new KaptchaRunner(), args);
    }

    @Override
    public String name() {
        return "kaptcha";
    }

    @Override
    public List<String> types() {
        return List.of("default", "ruoyi_char", "site_mix");
    }

    @Override
    public Map<String, Double> defaultMix() {
        return Common.Weighted.parse("default:1,ruoyi_char:1,site_mix:2", "mix").asMap();
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        String lengths = switch (type) {
            case "default" -> "5";
            case "ruoyi_char" -> "4";
            default -> "4:1,5:1,6:1";
        };
        return Common.Weighted.parse(lengths, "len").asMap();
    }

    @Override
    public Map<String, Double> defaultFonts(String type) {
        // Ordered (not Map.of): the pick order must not change between runs. "Arial,Courier" become these on Linux.
        return Common.Weighted.parse("Dialog:1,Monospaced:1", "fonts").asMap();
    }

    @Override
    public String defaultSizes() {
        return "200x50"; // only what a dry run prints: each type sets its own size
    }

    /** The settings of one image of {@code type}; site_mix draws them from the image's generator. */
    static Settings settings(String type, Random rnd) {
        return switch (type) {
            case "default" -> new Settings(200, 50, "default", DEFAULT_CHARS, 40, true, "WaterRipple");
            case "ruoyi_char" -> new Settings(160, 60, "default", DEFAULT_CHARS, 38, true, "ShadowGimpy");
            case "site_mix" -> {
                int width = 100 + rnd.nextInt(101);
                int height = 30 + rnd.nextInt(31);
                String[][] charsets = {{"digits", DIGITS}, {"lower32", LOWER32}, {"upper32", UPPER32}};
                String[] charset = charsets[rnd.nextInt(charsets.length)];
                boolean noise = rnd.nextBoolean();
                String[] engines = {"WaterRipple", "ShadowGimpy", "FishEyeGimpy"};
                String obscurificator = engines[rnd.nextInt(engines.length)];
                int fontSize = (int) Math.round((0.6 + 0.2 * rnd.nextDouble()) * height);
                yield new Settings(width, height, charset[0], charset[1], fontSize, noise, obscurificator);
            }
            default -> throw new Common.UsageException("unknown kaptcha type '" + type + "'");
        };
    }

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) {
        Settings s = settings(job.type(), rnd);
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < job.length(); i++) {
            sb.append(s.chars().charAt(rnd.nextInt(s.chars().length())));
        }
        String text = sb.toString();
        Set<String> used = new LinkedHashSet<>();
        Font[] chosen = fonts.perCharacter(job.fonts(), text, Font.BOLD, s.fontSize(), rnd, used);
        BufferedImage word = KaptchaFilters.renderWord(text, chosen, s.fontSize(), Color.BLACK, CHAR_SPACE,
                s.width(), s.height());
        // measured on the plain word, before fishEye draws its grid into it
        String flags = clipFlags(word, text, chosen, s);
        BufferedImage distorted = switch (s.obscurificator()) {
            case "WaterRipple" -> KaptchaFilters.waterRipple(word, s.noise(), Color.BLACK, rnd);
            case "ShadowGimpy" -> KaptchaFilters.shadowGimpy(word, s.noise(), Color.BLACK, rnd);
            default -> KaptchaFilters.fishEye(word, rnd); // FishEyeGimpy draws no noise whatever the config says
        };
        BufferedImage image = KaptchaFilters.onGradient(distorted, BACKGROUND_FROM, BACKGROUND_TO);
        KaptchaFilters.drawBorder(image, Color.BLACK);
        String font = String.join("+", used) + ";size=" + s.fontSize() + ";chars=" + s.charsName() + ";noise="
                + (s.noise() ? "DefaultNoise" : "NoNoise") + ";obsc=" + s.obscurificator();
        return new Common.Sample(Common.png(image), "png", text, null, font, flags, s.width(), s.height());
    }

    /** {@code edge_clip} when ink reaches the left or right strip, {@code v_clip} when a glyph loses ink vertically. */
    static String clipFlags(BufferedImage word, String text, Font[] fonts, Settings s) {
        List<String> flags = new ArrayList<>();
        if (KaptchaFilters.inkNearSides(word, EDGE_STRIP)) {
            flags.add("edge_clip");
        }
        int baseline = (s.height() - s.fontSize()) / 5 + s.fontSize(); // the word renderer's baseline
        for (int i = 0; i < text.length(); i++) {
            if (shareOffCanvas(fonts[i], text.charAt(i), baseline, s.height()) > V_CLIP_SHARE) {
                flags.add("v_clip");
                break;
            }
        }
        return String.join(",", flags);
    }

    private static final Map<String, Double> OFF_CANVAS = new ConcurrentHashMap<>();

    /**
     * The share of a glyph's ink above row 0 or below row {@code height - 1} when drawn on {@code baseline}: the
     * glyph is rasterised (antialiased, as the word renderer draws it) on a canvas tall enough to hold all of it.
     * Depends only on its arguments, so it is computed once per font, character and placement.
     */
    static double shareOffCanvas(Font font, char c, int baseline, int height) {
        String key = font.getFontName() + "|" + font.getSize2D() + "|" + c + "|" + baseline + "|" + height;
        return OFF_CANVAS.computeIfAbsent(key, k -> {
            FontRenderContext frc = new FontRenderContext(null, true, false);
            GlyphVector glyph = font.createGlyphVector(frc, new char[] {c});
            Rectangle2D bounds = glyph.getVisualBounds();
            int pad = 2;
            int top = (int) Math.floor(Math.min(0, baseline + bounds.getMinY())) - pad; // canvas row of mask row 0
            int bottom = (int) Math.ceil(Math.max(height, baseline + bounds.getMaxY())) + pad;
            int w = (int) Math.ceil(bounds.getWidth()) + 2 * pad;
            BufferedImage mask = new BufferedImage(w, bottom - top, BufferedImage.TYPE_BYTE_GRAY);
            Graphics2D g = mask.createGraphics();
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setColor(Color.WHITE);
            g.drawGlyphVector(glyph, (float) (pad - bounds.getMinX()), baseline - top);
            g.dispose();
            byte[] ink = ((DataBufferByte) mask.getRaster().getDataBuffer()).getData();
            long total = 0;
            long off = 0;
            for (int y = 0; y < mask.getHeight(); y++) {
                int row = y + top;
                for (int x = 0; x < w; x++) {
                    int v = ink[y * w + x] & 255;
                    total += v;
                    if (row < 0 || row >= height) {
                        off += v;
                    }
                }
            }
            return total == 0 ? 0.0 : off / (double) total;
        });
    }
}
