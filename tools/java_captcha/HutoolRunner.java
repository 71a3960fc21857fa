import java.awt.AlphaComposite;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.Rectangle;
import java.awt.RenderingHints;
import java.awt.font.FontRenderContext;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferByte;
import java.awt.image.DataBufferInt;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Hutool 5.8.34 {@code cn.hutool.captcha} look-alike, JDK only. Every type draws its text in {@code SansSerif} plain at
 * {@code (int) (0.75 * h)} on white, one random colour per character over the full RGB range and no contrast check:
 * <ul>
 * <li>{@code line}: LineCaptcha, 20-150 short one-pixel lines under antialiased text, each character in a w/len slot;
 * <li>{@code circle}: CircleCaptcha, 10-20 ovals under the text;
 * <li>{@code shear}: ShearCaptcha, the text sheared along x then y, then one thick line (2-4 px) across;
 * <li>{@code gif}: GifCaptcha, one frame per character; frame i draws character j at alpha (i+j)/n, wrapping to
 * (i+j-n-1)/n past 1, so frame 0 hides the first character; aliased text, one oval per character and frame, colours
 * 0-254, NeuQuant palettes (sample 10), 100 ms per frame, looping;
 * <li>{@code math}: MathGenerator ("9 -37=": operands 0-99 padded with spaces to 2 characters, one of + - *) on a line
 * or a shear captcha at random; every character, spaces included, gets a w/6 slot. The label drops the spaces.
 * </ul>
 * meta.tsv flags: {@code edge_clip} and {@code v_clip} when a glyph loses ink off the sides or the top/bottom (after
 * the shear, where there is one), {@code eq_clip} when math's trailing '=' is cut, {@code faint} when a glyph is nearly
 * white.
 */
public final class HutoolRunner implements Common.Family {
    static final String ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"; // no exclusions
    static final String OPERATORS = "+-*";
    static final double CLIP_FRACTION = 0.05; // share of a glyph's ink lost before it counts as clipped
    static final int SHEAR_CLIP_ROWS = 3; // rows in which the x shear pushes a glyph's ink off a side
    static final int FAINT_LUMA = 215; // Rec. 601 luma of a glyph colour (0-255) from which it reads as near-white
    static final int GIF_DELAY_CS = 10; // the library's 100 ms frame delay, in hundredths of a second
    static final int GIF_SAMPLE = 10; // NeuQuant sampling factor ("quality")

    public static void main(String[] args) {
        Common.main(new HutoolRunner(), args);
    }

    @Override
    public String name() {
        return "hutool";
    }

    @Override
    public List<String> types() {
        return List.of("line", "circle", "shear", "gif", "math");
    }

    @Override
    public Map<String, Double> defaultMix() {
        return Common.Weighted.parse("line:1,circle:1,shear:1,gif:1,math:1", "mix").asMap();
    }

    @Override
    public Map<String, Double> defaultLengths(String type) {
        // math always draws 6 characters (two padded operands, the operator and '='); the length is not used there
        return Common.Weighted.parse(type.equals("math") ? "6" : "4:1,5:1", "len").asMap();
    }

    @Override
    public Map<String, Double> defaultFonts(String type) {
        return Common.Weighted.parse("SansSerif", "fonts").asMap();
    }

    @Override
    public String defaultSizes() {
        return "200x100:1,150x50:1,120x40:1,100x40:1";
    }

    /** One drawn character: where its baseline starts and the colours it is drawn with (several in a GIF). */
    record Glyph(char character, float x, float y, Color[] colors, float[] alphas) {
        Glyph(char character, float x, float y, Color color) {
            this(character, x, y, new Color[] {color}, new float[] {1f});
        }
    }

    @Override
    public Common.Sample draw(Common.Job job, Random rnd, Common.FontBook fonts) {
        String type = job.type();
        int w = job.width();
        int h = job.height();
        String code;
        String answer = null;
        if (type.equals("math")) {
            int left = rnd.nextInt(100);
            int right = rnd.nextInt(100);
            char operator = OPERATORS.charAt(rnd.nextInt(OPERATORS.length()));
            code = padAfter(left) + operator + padAfter(right) + "=";
            answer = Integer.toString(operator == '+' ? left + right : operator == '-' ? left - right : left * right);
        } else {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < job.length(); i++) {
                sb.append(ALPHABET.charAt(rnd.nextInt(ALPHABET.length())));
            }
            code = sb.toString();
        }
        Common.ChosenFont chosen = fonts.font(job.fonts().pick(rnd), Font.PLAIN, Font.PLAIN, (int) (h * 0.75), code,
                rnd);
        Font font = chosen.font();
        List<Glyph> glyphs = new ArrayList<>();
        Shear shear = null;
        byte[] bytes;
        String extension = "png";
        switch (type) {
            case "line" -> bytes = Common.png(lineCaptcha(code, font, w, h, between(rnd, 20, 150), rnd, glyphs));
            case "circle" -> bytes = Common.png(circleCaptcha(code, font, w, h, between(rnd, 10, 20), rnd, glyphs));
            case "shear" -> {
                shear = new Shear(w, h);
                bytes = Common.png(shearCaptcha(code, font, w, h, between(rnd, 2, 4), rnd, glyphs, shear));
            }
            case "math" -> {
                if (rnd.nextBoolean()) {
                    bytes = Common.png(lineCaptcha(code, font, w, h, between(rnd, 20, 150), rnd, glyphs));
                } else {
                    shear = new Shear(w, h);
                    bytes = Common.png(shearCaptcha(code, font, w, h, between(rnd, 2, 4), rnd, glyphs, shear));
                }
            }
            case "gif" -> {
                bytes = Gif.encode(gifFrames(code, font, w, h, rnd, glyphs));
                extension = "gif";
            }
            default -> throw new Common.UsageException("unknown type '" + type + "'");
        }
        String label = code.replace(" ", "");
        String flags = flags(glyphs, font, !type.equals("gif"), w, h, shear);
        return new Common.Sample(bytes, extension, label, answer, chosen.name(), flags);
    }

    /** An operand padded with spaces after it to two characters, as MathGenerator writes it. */
    static String padAfter(int number) {
        String s = Integer.toString(number);
        return s.length() < 2 ? s + " " : s;
    }

    static int between(Random rnd, int lo, int hi) {
        return lo + rnd.nextInt(hi - lo + 1);
    }

    /** Any colour of the RGB cube, as Hutool's {@code ColorUtil.randomColor}. */
    static Color randomColor(Random rnd) {
        return new Color(rnd.nextInt(256), rnd.nextInt(256), rnd.nextInt(256));
    }

    static Graphics2D whiteCanvas(BufferedImage image) {
        Graphics2D g = image.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, image.getWidth(), image.getHeight());
        return g;
    }

    // ---------------------------------------------------------------- PNG types

    /** LineCaptcha: short aliased lines (up to w/8 by h/8 long) in random colours, then the text. */
    static BufferedImage lineCaptcha(String code, Font font, int w, int h, int lineCount, Random rnd,
            List<Glyph> glyphs) {
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = whiteCanvas(image);
        for (int i = 0; i < lineCount; i++) {
            int x = rnd.nextInt(w);
            int y = rnd.nextInt(h);
            int toX = x + rnd.nextInt(w / 8);
            int toY = y + rnd.nextInt(h / 8);
            g.setColor(randomColor(rnd));
            g.drawLine(x, y, toX, toY);
        }
        drawColourfulText(g, code, font, w, h, rnd, glyphs);
        g.dispose();
        return image;
    }

    /** CircleCaptcha: aliased ovals up to h/2 across in random colours, then the text. */
    static BufferedImage circleCaptcha(String code, Font font, int w, int h, int circleCount, Random rnd,
            List<Glyph> glyphs) {
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = whiteCanvas(image);
        for (int i = 0; i < circleCount; i++) {
            g.setColor(randomColor(rnd));
            g.drawOval(rnd.nextInt(w), rnd.nextInt(h), rnd.nextInt(h >> 1), rnd.nextInt(h >> 1));
        }
        drawColourfulText(g, code, font, w, h, rnd, glyphs);
        g.dispose();
        return image;
    }

    /**
     * Hutool's {@code GraphicsUtil.drawStringColourful}: antialiasing on, one character per w/len slot starting at the
     * slot's left edge, the baseline centring the font's line height, a fresh random colour per character.
     */
    static void drawColourfulText(Graphics2D g, String code, Font font, int w, int h, Random rnd,
            List<Glyph> glyphs) {
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setFont(font);
        FontMetrics metrics = g.getFontMetrics();
        int baseline = (h - metrics.getHeight()) / 2 + metrics.getAscent();
        int slot = w / code.length();
        for (int i = 0; i < code.length(); i++) {
            Color color = randomColor(rnd);
            g.setColor(color);
            g.drawString(String.valueOf(code.charAt(i)), i * slot, baseline);
            glyphs.add(new Glyph(code.charAt(i), i * slot, baseline, color));
        }
    }

    /** The whole-pixel shifts of ShearCaptcha: per row along x, then per column along y. */
    static final class Shear {
        final int[] rowShift;
        final int[] columnShift;

        Shear(int w, int h) {
            rowShift = new int[h];
            columnShift = new int[w];
        }
    }

    /**
     * ShearCaptcha: the text, then each row moved sideways by (p/2) sin(y/p + 2 pi phase) with p in [0, w) and phase 0
     * or 1, then each column moved down by (q/2) sin(x/q + 2 pi 7/20) with q in [0, h/2); what a move uncovers is
     * painted white. Last one straight line of the given thickness from the left to the right edge.
     */
    static BufferedImage shearCaptcha(String code, Font font, int w, int h, int thickness, Random rnd,
            List<Glyph> glyphs, Shear shear) {
        BufferedImage image = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = whiteCanvas(image);
        drawColourfulText(g, code, font, w, h, rnd, glyphs); // leaves antialiasing on for what follows, as Hutool
        int periodX = rnd.nextInt(w);
        int phase = rnd.nextInt(2);
        for (int y = 0; y < h; y++) {
            // a period of 0 gives 0 * sin(NaN) = NaN, which (int) turns into no shift
            int d = (int) ((periodX >> 1) * Math.sin((double) y / periodX + 2 * Math.PI * phase));
            shear.rowShift[y] = d;
            g.copyArea(0, y, w, 1, d, 0);
            g.setColor(Color.WHITE);
            g.drawLine(d, y, 0, y);
            g.drawLine(d + w, y, w, y);
        }
        int periodY = rnd.nextInt(h >> 1);
        for (int x = 0; x < w; x++) {
            int d = (int) ((periodY >> 1) * Math.sin((double) x / periodY + 2 * Math.PI * 7 / 20));
            shear.columnShift[x] = d;
            g.copyArea(x, 0, 1, h, 0, d);
            g.setColor(Color.WHITE);
            g.drawLine(x, d, x, 0);
            g.drawLine(x, d + h, x, h);
        }
        int fromY = rnd.nextInt(h) + 1;
        int toY = rnd.nextInt(h) + 1;
        g.setColor(randomColor(rnd));
        drawThickLine(g, 0, fromY, w, toY, thickness);
        g.dispose();
        return image;
    }

    /** A line {@code thickness} wide as a filled quadrilateral; the half-width offsets round away from zero. */
    static void drawThickLine(Graphics2D g, int x1, int y1, int x2, int y2, int thickness) {
        int dx = x2 - x1;
        int dy = y2 - y1;
        double scale = thickness / (2 * Math.sqrt(dx * dx + dy * dy));
        double ox = -scale * dy;
        double oy = scale * dx;
        int offsetX = (int) (ox + (ox > 0 ? 0.5 : -0.5));
        int offsetY = (int) (oy + (oy > 0 ? 0.5 : -0.5));
        g.fillPolygon(new int[] {x1 + offsetX, x1 - offsetX, x2 - offsetX, x2 + offsetX},
                new int[] {y1 + offsetY, y1 - offsetY, y2 - offsetY, y2 + offsetY}, 4);
    }

    // ---------------------------------------------------------------- GIF type

    /**
     * GifCaptcha's frames. Character j sits at max(m/2, 2) + (size + m) j with m = (w - n size) / n, baseline h/2 +
     * size/2, aliased. Colours are drawn one per frame, and a character whose colour is not drawn yet keeps the colour
     * set last (Graphics2D ignores a null colour), so in frame i characters i..n-1 share colour i. Each character also
     * draws one oval (5-29 by 10-34 px) in its colour and alpha.
     */
    static List<BufferedImage> gifFrames(String code, Font font, int w, int h, Random rnd, List<Glyph> glyphs) {
        int n = code.length();
        int size = font.getSize();
        float baseline = (h >> 1) + (size >> 1);
        float m = 1.0f * (w - n * size) / n;
        float left = Math.max(m / 2.0f, 2);
        Color[] colors = new Color[n];
        Color[][] glyphColors = new Color[n][n];
        float[][] glyphAlphas = new float[n][n];
        List<BufferedImage> frames = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            colors[i] = new Color(rnd.nextInt(255), rnd.nextInt(255), rnd.nextInt(255));
            BufferedImage frame = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
            Graphics2D g = whiteCanvas(frame);
            g.setFont(font);
            for (int j = 0; j < n; j++) {
                float alpha = gifAlpha(n, i, j);
                Color color = colors[Math.min(i, j)];
                g.setComposite(AlphaComposite.getInstance(AlphaComposite.SRC_OVER, alpha));
                g.setColor(color);
                g.drawOval(rnd.nextInt(w), rnd.nextInt(h), between(rnd, 5, 29), 5 + between(rnd, 5, 29));
                g.drawString(String.valueOf(code.charAt(j)), left + (size + m) * j, baseline);
                glyphColors[j][i] = color;
                glyphAlphas[j][i] = alpha;
            }
            g.dispose();
            frames.add(frame);
        }
        for (int j = 0; j < n; j++) {
            glyphs.add(new Glyph(code.charAt(j), left + (size + m) * j, baseline, glyphColors[j], glyphAlphas[j]));
        }
        return frames;
    }

    /** The alpha of character j in frame i of n, in the library's float arithmetic: (i+j)/n, past 1 (i+j-n-1)/n. */
    static float gifAlpha(int n, int i, int j) {
        int sum = i + j;
        float step = 1f / n;
        float wrap = (n + 1) * step;
        float alpha = sum > n ? sum * step - wrap : sum * step;
        return Math.max(0f, Math.min(1f, alpha));
    }

    // ---------------------------------------------------------------- flags

    /** Ink of one glyph: its total coverage, what fell off the sides and off the top/bottom, and shear rows lost. */
    record Ink(double total, double sides, double topBottom, int shearRows) {
        boolean sideClipped() {
            return total > 0 && (sides >= CLIP_FRACTION * total || shearRows >= SHEAR_CLIP_ROWS);
        }

        boolean verticalClipped() {
            return total > 0 && topBottom >= CLIP_FRACTION * total;
        }
    }

    /** meta.tsv flags from where each glyph's ink lands and from its colours. */
    static String flags(List<Glyph> glyphs, Font font, boolean antialias, int w, int h, Shear shear) {
        boolean edge = false;
        boolean vertical = false;
        boolean equals = false;
        boolean faint = false;
        for (Glyph glyph : glyphs) {
            if (glyph.character() == ' ') {
                continue;
            }
            Ink ink = ink(glyph, font, antialias, w, h, shear);
            if (glyph.character() == '=') {
                equals |= ink.sideClipped() || ink.verticalClipped();
            } else {
                edge |= ink.sideClipped();
                vertical |= ink.verticalClipped();
            }
            faint |= faint(glyph);
        }
        List<String> out = new ArrayList<>();
        if (edge) {
            out.add("edge_clip");
        }
        if (vertical) {
            out.add("v_clip");
        }
        if (equals) {
            out.add("eq_clip");
        }
        if (faint) {
            out.add("faint");
        }
        return String.join(",", out);
    }

    /**
     * A glyph is faint when even where it is drawn darkest it stays near white: its colour blended over white with
     * its alpha (a GIF character per frame) reaches {@link #FAINT_LUMA}.
     */
    static boolean faint(Glyph glyph) {
        double darkest = 255;
        for (int k = 0; k < glyph.colors().length; k++) {
            Color c = glyph.colors()[k];
            float a = glyph.alphas()[k];
            double luma = 0.299 * c.getRed() + 0.587 * c.getGreen() + 0.114 * c.getBlue();
            darkest = Math.min(darkest, 255 - a * (255 - luma));
        }
        return darkest >= FAINT_LUMA;
    }

    /**
     * Renders the glyph alone (same font, position and antialiasing) and follows each inked pixel through the shear:
     * ink outside the canvas, or moved off it by a row or column shift, is lost.
     */
    static Ink ink(Glyph glyph, Font font, boolean antialias, int w, int h, Shear shear) {
        String s = String.valueOf(glyph.character());
        Object hint = antialias ? RenderingHints.VALUE_ANTIALIAS_ON : RenderingHints.VALUE_ANTIALIAS_OFF;
        Object textHint = antialias ? RenderingHints.VALUE_TEXT_ANTIALIAS_ON : RenderingHints.VALUE_TEXT_ANTIALIAS_OFF;
        FontRenderContext frc = new FontRenderContext(null, textHint, RenderingHints.VALUE_FRACTIONALMETRICS_OFF);
        Rectangle box = font.createGlyphVector(frc, s).getPixelBounds(frc, glyph.x(), glyph.y());
        if (box.isEmpty()) {
            return new Ink(0, 0, 0, 0);
        }
        int ox = box.x - 2;
        int oy = box.y - 2;
        int bw = box.width + 4;
        int bh = box.height + 4;
        BufferedImage mask = new BufferedImage(bw, bh, BufferedImage.TYPE_BYTE_GRAY);
        Graphics2D g = mask.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, hint);
        g.setColor(Color.WHITE);
        g.setFont(font);
        g.drawString(s, glyph.x() - ox, glyph.y() - oy); // an integer shift keeps the glyph's pixel grid
        g.dispose();
        byte[] coverage = ((DataBufferByte) mask.getRaster().getDataBuffer()).getData();
        double total = 0;
        double sides = 0;
        double topBottom = 0;
        double[] lostInRow = new double[h];
        for (int my = 0; my < bh; my++) {
            for (int mx = 0; mx < bw; mx++) {
                double c = (coverage[my * bw + mx] & 255) / 255.0;
                if (c == 0) {
                    continue;
                }
                total += c;
                int x = mx + ox;
                int y = my + oy;
                if (y < 0 || y >= h) {
                    topBottom += c;
                } else if (x < 0 || x >= w) {
                    sides += c;
                } else if (shear != null) {
                    int sx = x + shear.rowShift[y];
                    if (sx < 0 || sx >= w) {
                        sides += c;
                        lostInRow[y] += c;
                    } else {
                        int sy = y + shear.columnShift[sx];
                        if (sy < 0 || sy >= h) {
                            topBottom += c;
                        }
                    }
                }
            }
        }
        int rows = 0;
        for (double lost : lostInRow) {
            rows += lost >= 0.5 ? 1 : 0;
        }
        return new Ink(total, sides, topBottom, rows);
    }

    // ---------------------------------------------------------------- GIF encoding

    /**
     * The GIF the library's AnimatedGifEncoder writes: GIF89a, 256-colour NeuQuant palette per frame (the first as the
     * global table, the others local), loop forever, no transparency, disposal 0, LZW in 254-byte packets.
     */
    static final class Gif {
        private Gif() {}

        static byte[] encode(List<BufferedImage> frames) {
            int w = frames.get(0).getWidth();
            int h = frames.get(0).getHeight();
            List<byte[]> palettes = new ArrayList<>();
            List<byte[]> indices = new ArrayList<>();
            for (BufferedImage frame : frames) {
                byte[] bgr = bgrBytes(frame);
                NeuQuant quant = new NeuQuant(bgr, GIF_SAMPLE);
                byte[] indexed = new byte[w * h];
                int[] rgb = ((DataBufferInt) frame.getRaster().getDataBuffer()).getData();
                int last = -1; // runs of one colour (mostly the white background) map once
                byte index = 0;
                for (int i = 0, k = 0; i < indexed.length; i++, k += 3) {
                    int colour = rgb[i] & 0xFFFFFF; // the raster may carry an opaque alpha byte
                    if (colour != last) {
                        last = colour;
                        index = (byte) quant.map(bgr[k] & 255, bgr[k + 1] & 255, bgr[k + 2] & 255);
                    }
                    indexed[i] = index;
                }
                palettes.add(quant.rgbPalette());
                indices.add(indexed);
            }
            return write(w, h, palettes, indices);
        }

        /** The file around frames already quantized: 768-byte RGB palettes and one palette index per pixel. */
        static byte[] write(int w, int h, List<byte[]> palettes, List<byte[]> indices) {
            ByteArrayOutputStream out = new ByteArrayOutputStream(16384);
            out.writeBytes("GIF89a".getBytes(StandardCharsets.US_ASCII));
            for (int f = 0; f < palettes.size(); f++) {
                if (f == 0) {
                    writeShort(out, w);
                    writeShort(out, h);
                    out.write(0x80 | 0x70 | 7); // global table, colour resolution 8 bits, 256 entries
                    out.write(0); // background index
                    out.write(0); // aspect ratio
                    out.writeBytes(palettes.get(0));
                    out.writeBytes(new byte[] {0x21, (byte) 0xFF, 11});
                    out.writeBytes("NETSCAPE2.0".getBytes(StandardCharsets.US_ASCII));
                    out.writeBytes(new byte[] {3, 1, 0, 0, 0}); // loop count 0: forever
                }
                out.writeBytes(new byte[] {0x21, (byte) 0xF9, 4, 0}); // graphic control: disposal 0, opaque
                writeShort(out, GIF_DELAY_CS);
                out.write(0); // transparent index (unused)
                out.write(0);
                out.write(0x2C);
                writeShort(out, 0);
                writeShort(out, 0);
                writeShort(out, w);
                writeShort(out, h);
                if (f == 0) {
                    out.write(0); // the global table applies
                } else {
                    out.write(0x80 | 7); // a local table of 256 entries
                    out.writeBytes(palettes.get(f));
                }
                Lzw.write(out, indices.get(f), 8);
            }
            out.write(0x3B);
            return out.toByteArray();
        }

        /** Pixels as B, G, R bytes, the layout the quantizer reads. */
        static byte[] bgrBytes(BufferedImage image) {
            int[] rgb = ((DataBufferInt) image.getRaster().getDataBuffer()).getData();
            byte[] bgr = new byte[rgb.length * 3];
            for (int i = 0, k = 0; i < rgb.length; i++, k += 3) {
                bgr[k] = (byte) rgb[i];
                bgr[k + 1] = (byte) (rgb[i] >> 8);
                bgr[k + 2] = (byte) (rgb[i] >> 16);
            }
            return bgr;
        }

        static void writeShort(ByteArrayOutputStream out, int value) {
            out.write(value & 255);
            out.write(value >> 8 & 255);
        }
    }

    /**
     * GIF LZW with the code-size schedule of the Unix compress family: codes widen once the next free code exceeds the
     * current maximum, and when all 4096 codes are used a clear code restarts the table.
     */
    static final class Lzw {
        private static final int MAX_BITS = 12;
        private static final int TABLE = 5003; // open-addressing hash, about 80% full at 4096 codes

        private final ByteArrayOutputStream out;
        private final byte[] packet = new byte[256];
        private int packetLength;
        private int bitBuffer;
        private int bitCount;
        private int codeBits;
        private int maxCode;
        private int nextCode;
        private boolean cleared;
        private final int initialBits;
        private final int clearCode;
        private final int endCode;

        private Lzw(ByteArrayOutputStream out, int initialBits) {
            this.out = out;
            this.initialBits = initialBits;
            clearCode = 1 << (initialBits - 1);
            endCode = clearCode + 1;
        }

        static void write(ByteArrayOutputStream out, byte[] pixels, int colorBits) {
            int minCodeSize = Math.max(2, colorBits);
            out.write(minCodeSize);
            new Lzw(out, minCodeSize + 1).compress(pixels);
            out.write(0); // block terminator
        }

        private void compress(byte[] pixels) {
            int[] keys = new int[TABLE]; // (character << 12) + prefix, or -1
            int[] codes = new int[TABLE];
            codeBits = initialBits;
            maxCode = (1 << codeBits) - 1;
            nextCode = clearCode + 2;
            int shift = 0;
            for (int size = TABLE; size < 65536; size *= 2) {
                shift++;
            }
            shift = 8 - shift;
            Arrays.fill(keys, -1);
            emit(clearCode);
            int prefix = pixels.length == 0 ? 0 : pixels[0] & 255;
            scan:
            for (int p = 1; p < pixels.length; p++) {
                int c = pixels[p] & 255;
                int key = (c << MAX_BITS) + prefix;
                int slot = (c << shift) ^ prefix;
                if (keys[slot] == key) {
                    prefix = codes[slot];
                    continue;
                }
                if (keys[slot] >= 0) {
                    int probe = slot == 0 ? 1 : TABLE - slot;
                    do {
                        slot -= probe;
                        if (slot < 0) {
                            slot += TABLE;
                        }
                        if (keys[slot] == key) {
                            prefix = codes[slot];
                            continue scan;
                        }
                    } while (keys[slot] >= 0);
                }
                emit(prefix);
                prefix = c;
                if (nextCode < 1 << MAX_BITS) {
                    codes[slot] = nextCode++;
                    keys[slot] = key;
                } else {
                    Arrays.fill(keys, -1);
                    nextCode = clearCode + 2;
                    cleared = true;
                    emit(clearCode);
                }
            }
            emit(prefix);
            emit(endCode);
        }

        private void emit(int code) {
            bitBuffer &= (1 << bitCount) - 1;
            bitBuffer = bitCount > 0 ? bitBuffer | code << bitCount : code;
            bitCount += codeBits;
            while (bitCount >= 8) {
                byteOut(bitBuffer & 255);
                bitBuffer >>= 8;
                bitCount -= 8;
            }
            if (nextCode > maxCode || cleared) {
                if (cleared) {
                    codeBits = initialBits;
                    maxCode = (1 << codeBits) - 1;
                    cleared = false;
                } else {
                    codeBits++;
                    maxCode = codeBits == MAX_BITS ? 1 << MAX_BITS : (1 << codeBits) - 1;
                }
            }
            if (code == endCode) {
                while (bitCount > 0) {
                    byteOut(bitBuffer & 255);
                    bitBuffer >>= 8;
                    bitCount -= 8;
                }
                flushPacket();
            }
        }

        private void byteOut(int b) {
            packet[packetLength++] = (byte) b;
            if (packetLength >= 254) {
                flushPacket();
            }
        }

        private void flushPacket() {
            if (packetLength > 0) {
                out.write(packetLength);
                out.write(packet, 0, packetLength);
                packetLength = 0;
            }
        }
    }

    /**
     * Dekker's NeuQuant colour quantizer (1994) in the integer arithmetic of the GIF encoder Hutool bundles: a 1-D
     * Kohonen network of 256 neurons trained on every {@code sample}-th pixel in 100 cycles, then indexed on green for
     * the nearest-colour lookup (city-block distance).
     */
    static final class NeuQuant {
        private static final int SIZE = 256;
        private static final int[] PRIMES = {499, 491, 487, 503};
        private static final int MIN_BYTES = 3 * 503;
        private static final int COLOUR_SHIFT = 4; // colours carry 4 fraction bits while learning
        private static final int CYCLES = 100;
        private static final int FRACTION_SHIFT = 16;
        private static final int GAMMA_SHIFT = 10;
        private static final int BETA_SHIFT = 10;
        private static final int BETA = (1 << FRACTION_SHIFT) >> BETA_SHIFT;
        private static final int BETA_GAMMA = (1 << FRACTION_SHIFT) << (GAMMA_SHIFT - BETA_SHIFT);
        private static final int INITIAL_RADIUS_UNITS = SIZE >> 3;
        private static final int RADIUS_SHIFT = 6;
        private static final int RADIUS_DECREASE = 30;
        private static final int ALPHA_SHIFT = 10;
        private static final int RADPOWER_SHIFT = 8;
        private static final int NEIGHBOUR_SHIFT = ALPHA_SHIFT + RADPOWER_SHIFT;

        private final int[] blue = new int[SIZE];
        private final int[] green = new int[SIZE];
        private final int[] red = new int[SIZE];
        private final int[] number = new int[SIZE]; // the neuron's place before sorting: its palette index
        private final int[] bias = new int[SIZE];
        private final int[] freq = new int[SIZE];
        private final int[] radpower = new int[INITIAL_RADIUS_UNITS];
        private final int[] greenIndex = new int[256];

        NeuQuant(byte[] bgr, int sample) {
            for (int i = 0; i < SIZE; i++) {
                blue[i] = green[i] = red[i] = (i << (COLOUR_SHIFT + 8)) / SIZE;
                freq[i] = (1 << FRACTION_SHIFT) / SIZE;
            }
            learn(bgr, sample);
            for (int i = 0; i < SIZE; i++) {
                blue[i] >>= COLOUR_SHIFT;
                green[i] >>= COLOUR_SHIFT;
                red[i] >>= COLOUR_SHIFT;
                number[i] = i;
            }
            sortOnGreen();
        }

        private void learn(byte[] picture, int sample) {
            int length = picture.length;
            if (length < MIN_BYTES) {
                sample = 1;
            }
            int alphaDecrease = 30 + (sample - 1) / 3;
            int samplePixels = length / (3 * sample);
            int delta = Math.max(1, samplePixels / CYCLES);
            int alpha = 1 << ALPHA_SHIFT;
            int radius = INITIAL_RADIUS_UNITS << RADIUS_SHIFT;
            int rad = radius >> RADIUS_SHIFT;
            fillRadpower(alpha, rad);
            int step = 3;
            if (length >= MIN_BYTES) {
                step = 3 * PRIMES[3];
                for (int k = 0; k < 3; k++) {
                    if (length % PRIMES[k] != 0) {
                        step = 3 * PRIMES[k];
                        break;
                    }
                }
            }
            int pos = 0;
            for (int i = 1; i <= samplePixels; i++) {
                int b = (picture[pos] & 255) << COLOUR_SHIFT;
                int g = (picture[pos + 1] & 255) << COLOUR_SHIFT;
                int r = (picture[pos + 2] & 255) << COLOUR_SHIFT;
                int winner = contest(b, g, r);
                blue[winner] -= alpha * (blue[winner] - b) / (1 << ALPHA_SHIFT);
                green[winner] -= alpha * (green[winner] - g) / (1 << ALPHA_SHIFT);
                red[winner] -= alpha * (red[winner] - r) / (1 << ALPHA_SHIFT);
                if (rad != 0) {
                    moveNeighbours(rad, winner, b, g, r);
                }
                pos += step;
                if (pos >= length) {
                    pos -= length;
                }
                if (i % delta == 0) {
                    alpha -= alpha / alphaDecrease;
                    radius -= radius / RADIUS_DECREASE;
                    rad = radius >> RADIUS_SHIFT;
                    if (rad <= 1) {
                        rad = 0;
                    }
                    fillRadpower(alpha, rad);
                }
            }
        }

        private void fillRadpower(int alpha, int rad) {
            for (int i = 0; i < rad; i++) {
                radpower[i] = alpha * (((rad * rad - i * i) << RADPOWER_SHIFT) / (rad * rad));
            }
        }

        /** Nearest neuron (its frequency and bias updated) and the one nearest after bias, which is returned. */
        private int contest(int b, int g, int r) {
            int bestDistance = Integer.MAX_VALUE;
            int bestBiased = Integer.MAX_VALUE;
            int best = -1;
            int bestBiasedPos = -1;
            for (int i = 0; i < SIZE; i++) {
                int distance = Math.abs(blue[i] - b) + Math.abs(green[i] - g) + Math.abs(red[i] - r);
                if (distance < bestDistance) {
                    bestDistance = distance;
                    best = i;
                }
                int biased = distance - (bias[i] >> (FRACTION_SHIFT - COLOUR_SHIFT));
                if (biased < bestBiased) {
                    bestBiased = biased;
                    bestBiasedPos = i;
                }
                int betaFreq = freq[i] >> BETA_SHIFT;
                freq[i] -= betaFreq;
                bias[i] += betaFreq << GAMMA_SHIFT;
            }
            freq[best] += BETA;
            bias[best] -= BETA_GAMMA;
            return bestBiasedPos;
        }

        /** Pulls the neurons within {@code rad} of {@code centre} towards the colour, less the farther they are. */
        private void moveNeighbours(int rad, int centre, int b, int g, int r) {
            int lo = Math.max(centre - rad, -1);
            int hi = Math.min(centre + rad, SIZE);
            int up = centre + 1;
            int down = centre - 1;
            int m = 1;
            while (up < hi || down > lo) {
                int a = radpower[m++];
                if (up < hi) {
                    pull(up++, a, b, g, r);
                }
                if (down > lo) {
                    pull(down--, a, b, g, r);
                }
            }
        }

        private void pull(int i, int a, int b, int g, int r) {
            blue[i] -= a * (blue[i] - b) / (1 << NEIGHBOUR_SHIFT);
            green[i] -= a * (green[i] - g) / (1 << NEIGHBOUR_SHIFT);
            red[i] -= a * (red[i] - r) / (1 << NEIGHBOUR_SHIFT);
        }

        /** Selection sort on green and the start of each green value's run, for {@link #map}. */
        private void sortOnGreen() {
            int previous = 0;
            int start = 0;
            for (int i = 0; i < SIZE; i++) {
                int smallest = i;
                for (int j = i + 1; j < SIZE; j++) {
                    if (green[j] < green[smallest]) {
                        smallest = j;
                    }
                }
                if (smallest != i) {
                    swap(blue, i, smallest);
                    swap(green, i, smallest);
                    swap(red, i, smallest);
                    swap(number, i, smallest);
                }
                int value = green[i];
                if (value != previous) {
                    greenIndex[previous] = (start + i) >> 1;
                    for (int j = previous + 1; j < value; j++) {
                        greenIndex[j] = i;
                    }
                    previous = value;
                    start = i;
                }
            }
            greenIndex[previous] = (start + SIZE - 1) >> 1;
            for (int j = previous + 1; j < 256; j++) {
                greenIndex[j] = SIZE - 1;
            }
        }

        private static void swap(int[] a, int i, int j) {
            int t = a[i];
            a[i] = a[j];
            a[j] = t;
        }

        /** The palette as R, G, B bytes in neuron order (the indices {@link #map} returns). */
        byte[] rgbPalette() {
            byte[] palette = new byte[3 * SIZE];
            for (int i = 0; i < SIZE; i++) {
                int k = 3 * number[i];
                palette[k] = (byte) red[i];
                palette[k + 1] = (byte) green[i];
                palette[k + 2] = (byte) blue[i];
            }
            return palette;
        }

        /** The palette index of the neuron nearest to (b, g, r), searching outwards from the green index. */
        int map(int b, int g, int r) {
            int bestDistance = 1000;
            int best = -1;
            int up = greenIndex[g];
            int down = up - 1;
            while (up < SIZE || down >= 0) {
                if (up < SIZE) {
                    int distance = green[up] - g;
                    if (distance >= bestDistance) {
                        up = SIZE;
                    } else {
                        distance = Math.abs(distance) + Math.abs(blue[up] - b);
                        if (distance < bestDistance) {
                            distance += Math.abs(red[up] - r);
                            if (distance < bestDistance) {
                                bestDistance = distance;
                                best = number[up];
                            }
                        }
                        up++;
                    }
                }
                if (down >= 0) {
                    int distance = g - green[down];
                    if (distance >= bestDistance) {
                        down = -1;
                    } else {
                        distance = Math.abs(distance) + Math.abs(blue[down] - b);
                        if (distance < bestDistance) {
                            distance += Math.abs(red[down] - r);
                            if (distance < bestDistance) {
                                bestDistance = distance;
                                best = number[down];
                            }
                        }
                        down--;
                    }
                }
            }
            return best;
        }
    }
}
