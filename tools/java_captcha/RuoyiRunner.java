import java.awt.Color;
import java.awt.Font;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferByte;
import java.awt.image.DataBufferInt;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.Random;
import java.util.Set;
import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.ImageWriter;
import javax.imageio.stream.ImageInputStream;
import javax.imageio.stream.ImageOutputStream;
import javax.imageio.stream.MemoryCacheImageInputStream;
import javax.imageio.stream.MemoryCacheImageOutputStream;

/**
 * Ruoyi's Kaptcha captchas: {@code ruoyi_math} (blue "3*8=?", size 35, no noise) and {@code ruoyi_char} (black
 * lowercase/digit text, size 38, length 4, noise curves). Both: 160x60, Arial/Courier bold, ShadowGimpy, light grey to
 * white gradient, green 1-px border, saved as JPEG by the library; here decoded again and letterboxed (bicubic,
 * centred on white) into the requested size as the reference's normalizer does, then saved as PNG.
 */
public final class RuoyiRunner implements Common.Family {
    static final int DRAW_WIDTH = 160;
    static final int DRAW_HEIGHT = 60;
    static final String CHAR_STRING = "abcde2345678gfynmnpwx"; // Kaptcha's default character string
    static final Color BORDER = new Color(105, 179, 90);
    static final Color BACKGROUND_FROM = new Color(192, 192, 192);

    public static void main(String[] args) {
        Common.main(new RuoyiRunner(), args);
    }

    @Override
    public String name() {
        return "ruoyi";
    }

    @Override
    public List<String> types() {
        return List.of("ruoyi_math", "ruoyi_char");
    }

    @Override
    public Map<String, Double> defaultMix() {
        return Common.Weighted.parse("ruoyi_math:1", "mix").asMap();
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        return Common.Weighted.parse(type.equals("ruoyi_math") ? "5" : "4", "len").asMap(); // math: "D op D=?"
    }

    @Override
    public Map<String, Double> defaultFonts(String type) {
        // Ordered (not Map.of): the pick order must not change between runs. "Arial,Courier" become these on Linux.
        return Common.Weighted.parse("Dialog:1,Monospaced:1", "fonts").asMap();
    }

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) throws IOException {
        boolean math = job.type().equals("ruoyi_math");
        String text;
        String answer = null;
        if (math) {
            String[] question = mathQuestion(rnd);
            text = question[0];
            answer = question[1];
        } else {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < job.length(); i++) {
                sb.append(CHAR_STRING.charAt(rnd.nextInt(CHAR_STRING.length())));
            }
            text = sb.toString();
        }
        int fontSize = math ? 35 : 38;
        Set<String> used = new LinkedHashSet<>();
        Font[] chosen = fonts.perCharacter(job.fonts(), text, Font.BOLD, fontSize, rnd, used);
        Color color = math ? Color.BLUE : Color.BLACK;
        BufferedImage word = KaptchaFilters.renderWord(text, chosen, fontSize, color, 3, DRAW_WIDTH, DRAW_HEIGHT);
        BufferedImage distorted = KaptchaFilters.shadowGimpy(word, !math, Color.BLACK, rnd);
        BufferedImage image = KaptchaFilters.onGradient(distorted, BACKGROUND_FROM, Color.WHITE);
        KaptchaFilters.drawBorder(image, BORDER);
        image = letterbox(Common.jpegRoundTrip(image, -1), job.width(), job.height());
        return new Common.Sample(Common.png(image), "png", text, answer, String.join("+", used));
    }

    /**
     * Ruoyi's question: x, y uniform 0-9; a quarter "x*y", a half "y/x" when x divides y (else "x+y"), a quarter
     * the difference with the larger first. Overall + 0.34, - 0.25, * 0.25, / 0.16. Returns {text, answer}.
     */
    static String[] mathQuestion(Random rnd) {
        int x = rnd.nextInt(10);
        int y = rnd.nextInt(10);
        int branch = (int) Math.round(rnd.nextDouble() * 2);
        if (branch == 0) {
            return new String[] {x + "*" + y + "=?", Integer.toString(x * y)};
        }
        if (branch == 1) {
            if (x != 0 && y % x == 0) {
                return new String[] {y + "/" + x + "=?", Integer.toString(y / x)};
            }
            return new String[] {x + "+" + y + "=?", Integer.toString(x + y)};
        }
        int big = Math.max(x, y);
        int small = Math.min(x, y);
        return new String[] {big + "-" + small + "=?", Integer.toString(big - small)};
    }

    /**
     * Scales to fit inside w x h keeping the aspect ratio and centres it on white. Bicubic (a = -0.5, sampled at pixel
     * centres, edges clamped, no prefilter when shrinking), like Java2D's bicubic interpolation but much faster.
     */
    static BufferedImage letterbox(BufferedImage src, int w, int h) {
        int srcW = src.getWidth();
        int srcH = src.getHeight();
        if (srcW == w && srcH == h) {
            return src;
        }
        double scale = Math.min(w / (double) srcW, h / (double) srcH);
        int sw = Math.max(1, (int) Math.round(srcW * scale));
        int sh = Math.max(1, (int) Math.round(srcH * scale));
        int[] in = Common.rgbPixels(src);
        Taps across = taps(srcW, sw);
        Taps down = taps(srcH, sh);
        float[] rows = new float[3 * sw * srcH]; // horizontal pass, 3 channels interleaved
        for (int y = 0, o = 0; y < srcH; y++) {
            int row = y * srcW;
            for (int x = 0; x < sw; x++, o += 3) {
                float r = 0;
                float g = 0;
                float b = 0;
                for (int t = 4 * x; t < 4 * x + 4; t++) {
                    int p = in[row + across.index[t]];
                    float k = across.weight[t];
                    r += k * (p >> 16 & 255);
                    g += k * (p >> 8 & 255);
                    b += k * (p & 255);
                }
                rows[o] = r;
                rows[o + 1] = g;
                rows[o + 2] = b;
            }
        }
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        int[] out = ((DataBufferInt) image.getRaster().getDataBuffer()).getData();
        java.util.Arrays.fill(out, 0xFFFFFF);
        int left = (w - sw) / 2;
        int top = (h - sh) / 2;
        for (int y = 0; y < sh; y++) {
            int r0 = 3 * sw * down.index[4 * y];
            int r1 = 3 * sw * down.index[4 * y + 1];
            int r2 = 3 * sw * down.index[4 * y + 2];
            int r3 = 3 * sw * down.index[4 * y + 3];
            float k0 = down.weight[4 * y];
            float k1 = down.weight[4 * y + 1];
            float k2 = down.weight[4 * y + 2];
            float k3 = down.weight[4 * y + 3];
            int o = (top + y) * w + left;
            for (int i = 0; i < 3 * sw; i += 3) {
                int rgb = 0;
                for (int c = i; c < i + 3; c++) {
                    float v = k0 * rows[r0 + c] + k1 * rows[r1 + c] + k2 * rows[r2 + c] + k3 * rows[r3 + c];
                    rgb = rgb << 8 | (v <= 0 ? 0 : v >= 255 ? 255 : (int) (v + 0.5f));
                }
                out[o++] = rgb;
            }
        }
        return image;
    }

    /** For each output pixel, the 4 source indices (clamped) and cubic weights of one axis. */
    private record Taps(int[] index, float[] weight) {}

    private static final Map<Long, Taps> TAPS = new ConcurrentHashMap<>();

    /** Cubic convolution taps (a = -0.5, sampled at pixel centres) resampling {@code from} pixels to {@code to}. */
    private static Taps taps(int from, int to) {
        return TAPS.computeIfAbsent((long) from << 32 | to, key -> {
            int[] index = new int[4 * to];
            float[] weight = new float[4 * to];
            double a = -0.5;
            for (int o = 0; o < to; o++) {
                double f = (o + 0.5) * from / to - 0.5;
                int i0 = (int) Math.floor(f);
                double t = f - i0;
                double[] d = {1 + t, t, 1 - t, 2 - t};
                for (int k = 0; k < 4; k++) {
                    double x = d[k];
                    weight[4 * o + k] = (float) (x <= 1 ? ((a + 2) * x - (a + 3)) * x * x + 1
                            : ((a * x - 5 * a) * x + 8 * a) * x - 4 * a);
                    index[4 * o + k] = Math.max(0, Math.min(from - 1, i0 - 1 + k));
                }
            }
            return new Taps(index, weight);
        });
    }
}
