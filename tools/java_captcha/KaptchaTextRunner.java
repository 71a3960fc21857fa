import java.awt.Color;
import java.awt.Font;
import java.awt.image.BufferedImage;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * The "ctext" family: Kaptcha 2.3.2 text captchas in 18 styles {@code text:<water|shadow|fisheye>:<normal|wide|
 * compact>:<noise|nonoise>}. One colour per image from a weighted palette, a random bold font per character, 62
 * alphanumerics, white to blue-grey gradient, no border. Fish-eye draws no noise curves, as in Kaptcha.
 */
public final class KaptchaTextRunner implements Common.Family {
    static final String CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static final String[] DISTORTIONS = {"water", "shadow", "fisheye"};
    static final Map<String, Integer> SPACING = Map.of("normal", 3, "wide", 6, "compact", 1);
    static final String[] NOISE = {"noise", "nonoise"};
    static final int EDGE_STRIP = 2; // text ink this close to a side: meta.tsv flags the image edge_clip, as realdev
    static final Color BACKGROUND_FROM = new Color(255, 255, 255);
    static final Color BACKGROUND_TO = new Color(233, 238, 243);

    /** Text colours and weights. */
    static final Common.Weighted COLORS = Common.Weighted.parse(
            "000000:40,1C5BD5:15,228B22:10,8B0000:8,4B0082:8,D2691E:8,008080:6,2F4F4F:5", "palette");

    public static void main(String[] args) {
        Common.main(new KaptchaTextRunner(), args);
    }

    @Override
    public String name() {
        return "ctext";
    }

    @Override
    public List<String> types() {
        List<String> types = new ArrayList<>();
        for (String d : DISTORTIONS) {
            for (String s : new String[] {"normal", "wide", "compact"}) {
                for (String n : NOISE) {
                    types.add("text:" + d + ":" + s + ":" + n);
                }
            }
        }
        return types;
    }

    @Override
    public Map<String, Double> defaultMix() {
        Map<String, Double> mix = new LinkedHashMap<>();
        types().forEach(t -> mix.put(t, 1.0));
        return mix;
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        return Common.Weighted.parse(Common.DEFAULT_LENGTHS, "len").asMap();
    }

    @Override
    public Map<String, Double> defaultFonts(String type) {
        // The reference passes "Arial,Microsoft YaHei,SimSun,Noto Sans CJK SC", which this JDK maps to Dialog three
        // times. The real samples are lighter, narrower and shorter than that and show Times-like serifs and a light
        // sans: a broad mix of the installed fonts, weighted to match realdev's ink, width and height per character
        // (docs/generators.md, "ctext fonts").
        return Common.Weighted.parse("Dialog:3,Liberation Sans:3,Liberation Serif:2,Noto Sans CJK SC:2,"
                + "Noto Serif CJK SC:1,Serif:1,WenQuanYi Zen Hei:2", "fonts").asMap();
    }

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) {
        String[] style = job.type().split(":");
        String distortion = style[1];
        int charSpace = SPACING.get(style[2]);
        boolean noise = style[3].equals("noise");
        int w = job.width();
        int h = job.height();
        int fontSize = Math.max(16, Math.round(0.72f * h));
        StringBuilder word = new StringBuilder();
        for (int i = 0; i < job.length(); i++) {
            word.append(CHARSET.charAt(rnd.nextInt(CHARSET.length())));
        }
        Set<String> used = new LinkedHashSet<>();
        Font[] chosen = fonts.perCharacter(job.fonts(), word.toString(), Font.BOLD, fontSize, rnd, used);
        Color color = new Color(Integer.parseInt(COLORS.pick(rnd), 16));
        BufferedImage text = KaptchaFilters.renderWord(word.toString(), chosen, fontSize, color, charSpace, w, h);
        String flags = KaptchaFilters.inkNearSides(text, EDGE_STRIP) ? "edge_clip" : ""; // fishEye draws on text
        BufferedImage distorted = switch (distortion) {
            case "water" -> KaptchaFilters.waterRipple(text, noise, Color.BLACK, rnd);
            case "shadow" -> KaptchaFilters.shadowGimpy(text, noise, Color.BLACK, rnd);
            default -> KaptchaFilters.fishEye(text, rnd);
        };
        BufferedImage image = KaptchaFilters.onGradient(distorted, BACKGROUND_FROM, BACKGROUND_TO);
        return new Common.Sample(Common.png(image), "png", word.toString(), null, String.join("+", used), flags);
    }
}
