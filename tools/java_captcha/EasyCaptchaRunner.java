import java.awt.AlphaComposite;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.CubicCurve2D;
import java.awt.geom.QuadCurve2D;
import java.awt.image.BufferedImage;
import java.awt.image.IndexColorModel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageTypeSpecifier;
import javax.imageio.ImageWriter;
import javax.imageio.metadata.IIOMetadata;
import javax.imageio.metadata.IIOMetadataNode;
import javax.imageio.stream.ImageOutputStream;

/**
 * EasyCaptcha 1.6.2 look-alike, JDK only: PNG text captchas ({@code spec*}), animated GIFs ({@code gif*}), Chinese
 * ({@code cn}, {@code cn_gif}) and arithmetic ({@code arith}). White background, one palette colour per character,
 * hollow ovals and a Bezier line; GIFs fade every character in and out over one frame per character.
 */
public final class EasyCaptchaRunner implements Common.Family {
    static final String DIGITS = "23456789";
    static final String UPPER = "ABCDEFGHJKMNPQRSTUVWXYZ"; // no I, L, O
    static final String LOWER = "abcdefghjkmnpqrstuvwxyz"; // no i, l, o

    /**
     * The 487 characters of EasyCaptcha's Chinese alphabet (a widely published list of common characters, here in
     * its usual order). Every Chinese character of the real-library samples is in it; see docs/generators.md.
     */
    static final String CHINESE = "的一了是我不在人们有来他这上着个地到大里说就去子得也和那要下看天时过出小么起你都把好还多没为又可家学只以主会样年想生同老中十从自面前头道它后然走很像见两用她国动进成回什边作对开而己些现山民候经发工向事命给长水几义三声于高手知理眼志点心战二问但身方实吃做叫当住听革打呢真全才四已所敌之最光产情路分总条白话东席次亲如被花口放儿常气五第使写军吧文运再果怎定许快明行因别飞外树物活部门无往船望新带队先力完却站代员机更九您每风级跟笑啊孩万少直意夜比阶连车重便斗马哪化太指变社似士者干石满日决百原拿群究各六本思解立河村八难早论吗根共让相研今其书坐接应关信觉步反处记将千找争领或师结块跑谁草越字加脚紧爱等习阵怕月青半火法题建赶位唱海七女任件感准张团屋离色脸片科倒睛利世刚且由送切星导晚表够整认响雪流未场该并底深刻平伟忙提确近亮轻讲农古黑告界拉名呀土清阳照办史改历转画造嘴此治北必服雨穿内识验传业菜爬睡兴形量咱观苦体众通冲合破友度术饭公旁房极南枪读沙岁线野坚空收算至政城劳落钱特围弟胜教热展包歌类渐强数乡呼性音答哥际旧神座章帮啦受系令跳非何牛取入岸敢掉忽种装顶急林停息句区衣般报叶压慢叔背细";

    /** EasyCaptcha's twelve character colours. */
    static final Color[] PALETTE = {new Color(0, 135, 255), new Color(51, 153, 51), new Color(255, 102, 102),
        new Color(255, 153, 0), new Color(153, 102, 0), new Color(153, 102, 153), new Color(51, 153, 153),
        new Color(102, 102, 255), new Color(0, 102, 204), new Color(204, 51, 51), new Color(0, 153, 204),
        new Color(0, 51, 102)};

    static final Map<String, String> ALPHABETS = new LinkedHashMap<>();

    static {
        String all = DIGITS + UPPER + LOWER;
        ALPHABETS.put("spec", all);
        ALPHABETS.put("spec_num", DIGITS);
        ALPHABETS.put("spec_char", UPPER + LOWER);
        ALPHABETS.put("spec_upper", UPPER);
        ALPHABETS.put("spec_lower", LOWER);
        ALPHABETS.put("spec_numupper", DIGITS + UPPER);
        ALPHABETS.put("spec_numlower", DIGITS + LOWER);
        ALPHABETS.put("gif", all);
        ALPHABETS.put("gif_numupper", DIGITS + UPPER);
        ALPHABETS.put("gif_numlower", DIGITS + LOWER);
        ALPHABETS.put("cn", CHINESE);
        ALPHABETS.put("cn_gif", CHINESE);
        ALPHABETS.put("arith", "0123456789");
    }

    public static void main(String[] args) {
        Common.main(new EasyCaptchaRunner(), args);
    }

    @Override
    public String name() {
        return "easy";
    }

    @Override
    public List<String> types() {
        return new ArrayList<>(ALPHABETS.keySet());
    }

    @Override
    public Map<String, Double> defaultMix() {
        // The reference smart generator: text 70 (spec 50, numupper 25, numlower 10, upper 10, lower 5), arith 30.
        return Common.Weighted.parse("spec:35,spec_numupper:17.5,spec_numlower:7,spec_upper:7,spec_lower:3.5,arith:30",
                "mix").asMap();
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        String spec = type.equals("arith") ? "2:80,3:20" : type.startsWith("cn") ? "4:70,5:30" : Common.DEFAULT_LENGTHS;
        return Common.Weighted.parse(spec, "len").asMap();
    }

    @Override
    public Map<String, Double> defaultFonts(String type) {
        // On Linux every Windows font name of the reference config falls back to Dialog; Latin images draw with a
        // builtin TTF at weight 30 out of 100.
        String spec = type.startsWith("cn") || type.equals("arith") ? "Dialog" : "builtin:30,Dialog:70";
        return Common.Weighted.parse(spec, "fonts").asMap();
    }

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) throws IOException {
        String type = job.type();
        String text;
        String answer = null;
        if (type.equals("arith")) {
            int[] operands = new int[job.length()];
            char[] operators = new char[job.length() - 1];
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < operands.length; i++) {
                operands[i] = rnd.nextInt(10);
                if (i > 0) {
                    operators[i - 1] = "+-x".charAt(rnd.nextInt(3));
                    sb.append(operators[i - 1]);
                }
                sb.append(operands[i]);
            }
            text = sb.append("=?").toString();
            answer = Long.toString(evaluate(operands, operators));
        } else {
            String alphabet = ALPHABETS.get(type);
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < job.length(); i++) {
                sb.append(alphabet.charAt(rnd.nextInt(alphabet.length())));
            }
            text = sb.toString();
        }
        float size = Math.max(18f, 0.72f * job.height());
        Common.ChosenFont chosen = fonts.font(job.fonts().pick(rnd), Font.BOLD, Font.PLAIN, size, text, rnd);
        Font font = chosen.font();
        Color[] colors = new Color[text.length()];
        for (int i = 0; i < colors.length; i++) {
            colors[i] = PALETTE[rnd.nextInt(PALETTE.length)];
        }
        byte[] bytes;
        String extension = "png";
        if (type.startsWith("gif") || type.equals("cn_gif")) {
            String probe = type.equals("cn_gif") ? "王" : "W";
            bytes = animatedGif(drawGifFrames(job.width(), job.height(), text, font, colors, probe, rnd));
            extension = "gif";
        } else {
            BufferedImage image = newWhiteImage(job.width(), job.height());
            Graphics2D g = antialiased(image);
            if (type.equals("arith")) {
                drawOvals(g, rnd, job.width(), job.height(), 2, null);
                drawCharacters(g, text, font, colors, "8", job.width(), job.height(), null);
            } else if (type.equals("cn")) {
                drawOvals(g, rnd, job.width(), job.height(), 3, null);
                g.setStroke(new BasicStroke(1.2f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND));
                drawBezierLine(g, rnd, job.width(), job.height());
                drawCharacters(g, text, font, colors, "王", job.width(), job.height(), null);
            } else {
                drawOvals(g, rnd, job.width(), job.height(), 2, null);
                g.setStroke(new BasicStroke(2f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND));
                drawBezierLine(g, rnd, job.width(), job.height());
                drawCharacters(g, text, font, colors, "W", job.width(), job.height(), null);
            }
            g.dispose();
            bytes = Common.png(image);
        }
        return new Common.Sample(bytes, extension, text, answer, chosen.name());
    }

    /** The value of the expression with the usual precedence: {@code x} binds before {@code +} and {@code -}. */
    static long evaluate(int[] operands, char[] operators) {
        long total = 0;
        long term = operands[0];
        char pending = '+';
        for (int i = 0; i < operators.length; i++) {
            if (operators[i] == 'x') {
                term *= operands[i + 1];
            } else {
                total += pending == '+' ? term : -term;
                pending = operators[i];
                term = operands[i + 1];
            }
        }
        return total + (pending == '+' ? term : -term);
    }

    static BufferedImage newWhiteImage(int w, int h) {
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, w, h);
        g.dispose();
        return image;
    }

    static Graphics2D antialiased(BufferedImage image) {
        Graphics2D g = image.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        return g;
    }

    /** Hollow circles, 5 to 14 px wide, anywhere but the bottom-right margin, each in a palette colour. */
    static void drawOvals(Graphics2D g, Random rnd, int w, int h, int count, Color color) {
        for (int i = 0; i < count; i++) {
            g.setColor(color != null ? color : PALETTE[rnd.nextInt(PALETTE.length)]);
            int d = 5 + rnd.nextInt(10);
            g.drawOval(rnd.nextInt(Math.max(1, w - 25)), rnd.nextInt(Math.max(1, h - 15)), d, d);
        }
    }

    /** One quadratic or cubic curve from the left edge to the right edge, upper half to lower half or back. */
    static void drawBezierLine(Graphics2D g, Random rnd, int w, int h) {
        g.setColor(PALETTE[rnd.nextInt(PALETTE.length)]);
        int y1 = between(rnd, 5, h / 2);
        int y2 = between(rnd, h / 2, h - 5);
        int cx1 = between(rnd, w / 4, w / 4 * 3);
        int cy1 = between(rnd, 5, h - 5);
        if (rnd.nextBoolean()) {
            int t = y1;
            y1 = y2;
            y2 = t;
        }
        if (rnd.nextBoolean()) {
            g.draw(new QuadCurve2D.Double(5, y1, cx1, cy1, w - 5, y2));
        } else {
            int cx2 = between(rnd, w / 4, w / 4 * 3);
            int cy2 = between(rnd, 5, h - 5);
            g.draw(new CubicCurve2D.Double(5, y1, cx1, cy1, cx2, cy2, w - 5, y2));
        }
    }

    /** A uniform integer in [lo, hi), or lo when the range is empty. */
    static int between(Random rnd, int lo, int hi) {
        return hi > lo ? lo + rnd.nextInt(hi - lo) : lo;
    }

    /**
     * The characters in equal cells of width W/len, each centred as if it were as wide as {@code probe}, with the
     * baseline set from the font's line height; {@code alphas} (or null) fades single characters.
     */
    static void drawCharacters(Graphics2D g, String text, Font font, Color[] colors, String probe, int w, int h,
            float[] alphas) {
        g.setFont(font);
        FontMetrics metrics = g.getFontMetrics();
        int cell = w / text.length();
        int margin = (cell - (int) metrics.getStringBounds(probe, g).getWidth()) / 2;
        for (int i = 0; i < text.length(); i++) {
            String ch = text.substring(i, i + 1);
            if (alphas != null) {
                g.setComposite(AlphaComposite.getInstance(AlphaComposite.SRC_OVER, alphas[i]));
            }
            g.setColor(colors[i]);
            int baseline = h - ((h - (int) metrics.getStringBounds(ch, g).getHeight()) >> 1);
            g.drawString(ch, i * cell + margin + 3, baseline - 3);
        }
    }

    /**
     * One frame per character. Every frame: new ovals at a random opacity, the same cubic curve in the first
     * character's colour, and character j of frame i at opacity ((i + j) mod len) / (len - 1).
     */
    static List<BufferedImage> drawGifFrames(int w, int h, String text, Font font, Color[] colors, String probe,
            Random rnd) {
        int len = text.length();
        double[] curve = {5, between(rnd, 5, h / 2), between(rnd, w / 4, w / 4 * 3), between(rnd, 5, h - 5),
            between(rnd, w / 4, w / 4 * 3), between(rnd, 5, h - 5), w - 5, between(rnd, h / 2, h - 5)};
        List<BufferedImage> frames = new ArrayList<>();
        for (int frame = 0; frame < len; frame++) {
            BufferedImage image = newWhiteImage(w, h);
            Graphics2D g = antialiased(image);
            g.setComposite(AlphaComposite.getInstance(AlphaComposite.SRC_OVER, 0.1f * rnd.nextInt(10)));
            drawOvals(g, rnd, w, h, 2, null);
            g.setComposite(AlphaComposite.getInstance(AlphaComposite.SRC_OVER, 0.7f));
            g.setStroke(new BasicStroke(1.2f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND));
            g.setColor(colors[0]);
            g.draw(new CubicCurve2D.Double(curve[0], curve[1], curve[2], curve[3], curve[4], curve[5], curve[6],
                    curve[7]));
            float[] alphas = new float[len];
            for (int j = 0; j < len; j++) {
                alphas[j] = len > 1 ? ((frame + j) % len) / (float) (len - 1) : 1f;
            }
            drawCharacters(g, text, font, colors, probe, w, h, alphas);
            g.dispose();
            frames.add(image);
        }
        return frames;
    }

    // ---------------------------------------------------------------- animated GIF

    /** Palette: white plus 21 steps from white to each of the 12 colours (what a faded glyph on white looks like). */
    static final IndexColorModel GIF_PALETTE;
    static final int[] GIF_RGB;

    static {
        int steps = 20;
        GIF_RGB = new int[256];
        int n = 0;
        GIF_RGB[n++] = 0xFFFFFF;
        for (Color c : PALETTE) {
            for (int s = 1; s <= steps; s++) {
                float a = s / (float) steps;
                int r = Math.round(c.getRed() * a + 255 * (1 - a));
                int gr = Math.round(c.getGreen() * a + 255 * (1 - a));
                int b = Math.round(c.getBlue() * a + 255 * (1 - a));
                GIF_RGB[n++] = r << 16 | gr << 8 | b;
            }
        }
        for (; n < 256; n++) { // greys for what overlapping colours make
            int v = (n - 241) * 255 / 15;
            GIF_RGB[n] = v << 16 | v << 8 | v;
        }
        byte[] r = new byte[256];
        byte[] g = new byte[256];
        byte[] b = new byte[256];
        for (int i = 0; i < 256; i++) {
            r[i] = (byte) (GIF_RGB[i] >> 16);
            g[i] = (byte) (GIF_RGB[i] >> 8);
            b[i] = (byte) GIF_RGB[i];
        }
        GIF_PALETTE = new IndexColorModel(8, 256, r, g, b);
    }

    /** Maps every pixel to the nearest palette entry (memoised per colour). */
    static BufferedImage quantize(BufferedImage rgb) {
        int w = rgb.getWidth();
        int h = rgb.getHeight();
        BufferedImage indexed = new BufferedImage(w, h, BufferedImage.TYPE_BYTE_INDEXED, GIF_PALETTE);
        byte[] out = ((java.awt.image.DataBufferByte) indexed.getRaster().getDataBuffer()).getData();
        int[] pixels = rgb.getRGB(0, 0, w, h, null, 0, w);
        Map<Integer, Integer> memo = new HashMap<>();
        for (int i = 0; i < pixels.length; i++) {
            int p = pixels[i] & 0xFFFFFF;
            Integer idx = memo.get(p);
            if (idx == null) {
                idx = nearest(p);
                memo.put(p, idx);
            }
            out[i] = (byte) (int) idx;
        }
        return indexed;
    }

    private static int nearest(int p) {
        int r = p >> 16 & 255;
        int g = p >> 8 & 255;
        int b = p & 255;
        int best = 0;
        int bestDist = Integer.MAX_VALUE;
        for (int i = 0; i < 256; i++) {
            int q = GIF_RGB[i];
            int dr = r - (q >> 16 & 255);
            int dg = g - (q >> 8 & 255);
            int db = b - (q & 255);
            int d = 3 * dr * dr + 4 * dg * dg + 2 * db * db;
            if (d < bestDist) {
                bestDist = d;
                best = i;
            }
        }
        return best;
    }

    /** Writes the frames as an animated GIF: 100 ms per frame, looping forever (NETSCAPE2.0 extension). */
    static byte[] animatedGif(List<BufferedImage> frames) throws IOException {
        ImageWriter writer = ImageIO.getImageWritersByFormatName("gif").next();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ImageOutputStream out = ImageIO.createImageOutputStream(bytes)) {
            writer.setOutput(out);
            writer.prepareWriteSequence(null);
            for (int i = 0; i < frames.size(); i++) {
                BufferedImage frame = quantize(frames.get(i));
                IIOMetadata meta = writer.getDefaultImageMetadata(new ImageTypeSpecifier(frame), null);
                String format = meta.getNativeMetadataFormatName();
                IIOMetadataNode root = (IIOMetadataNode) meta.getAsTree(format);
                IIOMetadataNode control = new IIOMetadataNode("GraphicControlExtension");
                control.setAttribute("disposalMethod", "none");
                control.setAttribute("userInputFlag", "FALSE");
                control.setAttribute("transparentColorFlag", "FALSE");
                control.setAttribute("delayTime", "10"); // hundredths of a second
                control.setAttribute("transparentColorIndex", "0");
                root.appendChild(control);
                if (i == 0) {
                    IIOMetadataNode apps = new IIOMetadataNode("ApplicationExtensions");
                    IIOMetadataNode loop = new IIOMetadataNode("ApplicationExtension");
                    loop.setAttribute("applicationID", "NETSCAPE");
                    loop.setAttribute("authenticationCode", "2.0");
                    loop.setUserObject(new byte[] {1, 0, 0}); // sub-block 1, loop count 0 = forever
                    apps.appendChild(loop);
                    root.appendChild(apps);
                }
                meta.setFromTree(format, root);
                writer.writeToSequence(new IIOImage(frame, null, meta), null);
            }
            writer.endWriteSequence();
        } finally {
            writer.dispose();
        }
        return bytes.toByteArray();
    }
}
