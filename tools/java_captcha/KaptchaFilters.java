import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.GradientPaint;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.font.FontRenderContext;
import java.awt.geom.CubicCurve2D;
import java.awt.geom.Line2D;
import java.awt.geom.PathIterator;
import java.awt.geom.Rectangle2D;
import java.awt.image.BufferedImage;
import java.awt.image.DataBufferInt;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Kaptcha-style drawing shared by the ctext and Ruoyi runners, written from the published behaviour of Kaptcha 2.3.2
 * and the jhlabs filters it uses: the word renderer, water / ripple / shadow / fish-eye distortions, noise curves,
 * the gradient background and the border. Images are ARGB until the background is added.
 */
final class KaptchaFilters {
    private KaptchaFilters() {}

    static int[] pixels(BufferedImage argb) {
        return ((DataBufferInt) argb.getRaster().getDataBuffer()).getData();
    }

    static BufferedImage newTransparent(int w, int h) {
        return new BufferedImage(w, h, BufferedImage.TYPE_INT_ARGB);
    }

    /**
     * Kaptcha's word renderer: baseline (H - size)/5 + size; the start x centres the glyphs' visual widths plus 2 px
     * per gap, but each glyph then advances by its visual width plus {@code charSpace}, so words drift and long ones
     * run off the canvas. {@code fonts[i]} is the font of character i.
     */
    static BufferedImage renderWord(String word, Font[] fonts, int fontSize, Color color, int charSpace, int w,
            int h) {
        BufferedImage image = newTransparent(w, h);
        Graphics2D g = image.createGraphics();
        g.setColor(color);
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setRenderingHint(RenderingHints.KEY_RENDERING, RenderingHints.VALUE_RENDER_QUALITY);
        FontRenderContext frc = g.getFontRenderContext();
        int baseline = (h - fontSize) / 5 + fontSize;
        int[] widths = new int[word.length()];
        int needed = 0;
        for (int i = 0; i < word.length(); i++) {
            char[] ch = {word.charAt(i)};
            widths[i] = (int) fonts[i].createGlyphVector(frc, ch).getVisualBounds().getWidth();
            needed += widths[i] + (i > 0 ? 2 : 0);
        }
        int x = (w - needed) / 2;
        for (int i = 0; i < word.length(); i++) {
            g.setFont(fonts[i]);
            g.drawChars(new char[] {word.charAt(i)}, 0, 1, x, baseline);
            x += widths[i] + charSpace;
        }
        g.dispose();
        return image;
    }

    /**
     * Whether the rendered word has ink (alpha above a faint edge) within {@code strip} pixels of the left or right
     * side: then glyphs were cut off, since Kaptcha centres a word for 2 px gaps and draws it with wider ones.
     */
    static boolean inkNearSides(BufferedImage word, int strip) {
        for (int y = 0; y < word.getHeight(); y++) {
            for (int k = 0; k < strip; k++) {
                if ((word.getRGB(k, y) >>> 24) > 32 || (word.getRGB(word.getWidth() - 1 - k, y) >>> 24) > 32) {
                    return true;
                }
            }
        }
        return false;
    }

    // ---------------------------------------------------------------- pixel transforms

    static final int EDGE_ZERO = 0;
    static final int EDGE_CLAMP = 1;

    /**
     * Resamples {@code src} bilinearly, non-premultiplied, like jhlabs' TransformFilter: output pixel i samples the
     * source at ({@code map[2i]}, {@code map[2i+1]}); outside the source an edge action applies.
     */
    static BufferedImage remap(BufferedImage src, float[] map, int edge) {
        int w = src.getWidth();
        int h = src.getHeight();
        int[] in = pixels(src);
        BufferedImage dst = newTransparent(w, h);
        int[] out = pixels(dst);
        for (int i = 0; i < out.length; i++) {
            float fx = map[2 * i];
            float fy = map[2 * i + 1];
            int sx = (int) Math.floor(fx);
            int sy = (int) Math.floor(fy);
            int nw;
            int ne;
            int sw;
            int se;
            if (sx >= 0 && sx < w - 1 && sy >= 0 && sy < h - 1) {
                int k = w * sy + sx;
                nw = in[k];
                ne = in[k + 1];
                sw = in[k + w];
                se = in[k + w + 1];
            } else {
                nw = pixel(in, sx, sy, w, h, edge);
                ne = pixel(in, sx + 1, sy, w, h, edge);
                sw = pixel(in, sx, sy + 1, w, h, edge);
                se = pixel(in, sx + 1, sy + 1, w, h, edge);
            }
            // transparent surroundings and solid glyph interiors need no interpolation
            out[i] = nw == ne && nw == sw && nw == se ? nw : bilinear(fx - sx, fy - sy, nw, ne, sw, se);
        }
        return dst;
    }

    private static int pixel(int[] in, int x, int y, int w, int h, int edge) {
        if (x < 0 || x >= w || y < 0 || y >= h) {
            if (edge == EDGE_ZERO) {
                return 0;
            }
            x = Math.max(0, Math.min(w - 1, x));
            y = Math.max(0, Math.min(h - 1, y));
        }
        return in[y * w + x];
    }

    private static int bilinear(float x, float y, int nw, int ne, int sw, int se) {
        float cx = 1f - x;
        float cy = 1f - y;
        int result = 0;
        for (int shift = 24; shift >= 0; shift -= 8) {
            float top = cx * (nw >> shift & 255) + x * (ne >> shift & 255);
            float bottom = cx * (sw >> shift & 255) + x * (se >> shift & 255);
            result |= ((int) (cy * top + y * bottom) & 255) << shift;
        }
        return result;
    }

    /** Sine ripple: x moves by xAmp*sin(y/xWave), y by yAmp*sin(x/yWave). With zero edges the output grows by the
     * amplitudes on every side and is drawn back at the origin, which shifts the text right and down. */
    static BufferedImage ripple(BufferedImage src, float xAmp, float yAmp, float xWave, float yWave, int edge) {
        int ox = edge == EDGE_ZERO ? -(int) xAmp : 0;
        int oy = edge == EDGE_ZERO ? -(int) yAmp : 0;
        int w = src.getWidth();
        int h = src.getHeight();
        float[] dx = new float[h]; // the x shift depends on y only, the y shift on x only
        float[] dy = new float[w];
        for (int y = 0; y < h; y++) {
            dx[y] = xAmp * (float) Math.sin((y + oy) / xWave);
        }
        for (int x = 0; x < w; x++) {
            dy[x] = yAmp * (float) Math.sin((x + ox) / yWave);
        }
        float[] map = new float[2 * w * h];
        for (int y = 0, i = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                map[i++] = x + ox + dx[y];
                map[i++] = y + oy + dy[x];
            }
        }
        return remap(src, map, edge);
    }

    private static final Map<Long, float[]> WATER_MAPS = new ConcurrentHashMap<>();

    /** Concentric water rings within {@code radius} px of the centre (amplitude 1.5, wavelength 2, phase 10). The
     * sampling map depends only on the size, so it is computed once per size. */
    static BufferedImage water(BufferedImage src, float amplitude, float wavelength, float phase, float radius) {
        int w = src.getWidth();
        int h = src.getHeight();
        long key = ((long) w << 32 | h) ^ Float.floatToIntBits(amplitude) * 31L ^ Float.floatToIntBits(radius) * 7L;
        float[] map = WATER_MAPS.computeIfAbsent(key, k -> waterMap(w, h, amplitude, wavelength, phase, radius));
        return remap(src, map, EDGE_ZERO);
    }

    private static float[] waterMap(int w, int h, float amplitude, float wavelength, float phase, float radius) {
        float cx = w * 0.5f;
        float cy = h * 0.5f;
        float radius2 = radius * radius;
        float[] map = new float[2 * w * h];
        for (int y = 0, i = 0; y < h; y++) {
            for (int x = 0; x < w; x++, i += 2) {
                float dx = x - cx;
                float dy = y - cy;
                float d2 = dx * dx + dy * dy;
                map[i] = x;
                map[i + 1] = y;
                if (d2 <= radius2) {
                    float d = (float) Math.sqrt(d2);
                    float amount = amplitude * (float) Math.sin(d / wavelength * 2 * Math.PI - phase);
                    amount *= (radius - d) / radius;
                    if (d != 0) {
                        amount *= wavelength / d;
                    }
                    map[i] = x + dx * amount;
                    map[i + 1] = y + dy * amount;
                }
            }
        }
        return map;
    }

    /** A black drop shadow: the alpha blurred (Gaussian, sigma radius/3), moved {@code distance} px down, text on top. */
    static BufferedImage shadow(BufferedImage src, float radius, int distance, float opacity) {
        int w = src.getWidth();
        int h = src.getHeight();
        int[] in = pixels(src);
        float[] alpha = new float[w * h];
        for (int i = 0; i < alpha.length; i++) {
            alpha[i] = (in[i] >>> 24) * opacity;
        }
        float[] blurred = gaussianBlur(alpha, w, h, radius);
        BufferedImage dst = newTransparent(w, h);
        int[] out = pixels(dst);
        for (int y = distance; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int a = Math.min(255, Math.round(blurred[(y - distance) * w + x]));
                out[y * w + x] = a << 24;
            }
        }
        for (int i = 0; i < out.length; i++) { // source over the shadow
            out[i] = over(in[i], out[i]);
        }
        return dst;
    }

    /**
     * Gaussian blur (sigma = radius / 3, clamped edges) approximated by three box blurs per axis, which is
     * indistinguishable at these sizes and several times faster than the 21-tap kernel.
     */
    static float[] gaussianBlur(float[] a, int w, int h, float radius) {
        int[] boxes = boxesForGauss(radius / 3f, 3);
        float[] x = a.clone();
        float[] t = new float[a.length];
        for (int box : boxes) {
            int r = (box - 1) / 2;
            boxBlur(x, t, w, h, r, true);
            boxBlur(t, x, w, h, r, false);
        }
        return x;
    }

    /** Box widths whose three passes approximate a Gaussian of {@code sigma} (the usual "ideal averaging filter"). */
    private static int[] boxesForGauss(float sigma, int n) {
        double ideal = Math.sqrt(12 * sigma * sigma / n + 1);
        int lower = (int) Math.floor(ideal);
        if (lower % 2 == 0) {
            lower--;
        }
        int upper = lower + 2;
        double m = (12 * sigma * sigma - n * lower * lower - 4 * n * lower - 3 * n) / (-4.0 * lower - 4);
        int[] sizes = new int[n];
        for (int i = 0; i < n; i++) {
            sizes[i] = i < Math.round(m) ? lower : upper;
        }
        return sizes;
    }

    /** Running-sum box blur of radius r along rows (horizontal) or columns, edges clamped. */
    private static void boxBlur(float[] in, float[] out, int w, int h, int r, boolean horizontal) {
        int lines = horizontal ? h : w;
        int len = horizontal ? w : h;
        int step = horizontal ? 1 : w;
        float scale = 1f / (2 * r + 1);
        for (int l = 0; l < lines; l++) {
            int base = horizontal ? l * w : l;
            int last = base + (len - 1) * step;
            float first = in[base];
            float end = in[last];
            float sum = (r + 1) * first; // the clamped left part of the window, then the right part
            for (int i = 1; i <= r; i++) {
                sum += i < len ? in[base + i * step] : end;
            }
            for (int i = 0, o = base; i < len; i++, o += step) {
                out[o] = sum * scale;
                int add = i + r + 1;
                int sub = i - r;
                sum += (add < len ? in[base + add * step] : end) - (sub > 0 ? in[base + sub * step] : first);
            }
        }
    }

    /** Porter-Duff source-over of two non-premultiplied ARGB pixels. */
    static int over(int src, int dst) {
        int sa = src >>> 24;
        if (sa == 255 || dst == 0) {
            return src;
        }
        if (sa == 0) {
            return dst;
        }
        int da = dst >>> 24;
        float fs = sa / 255f;
        float fd = da / 255f * (1 - fs);
        float oa = fs + fd;
        int r = Math.round(((src >> 16 & 255) * fs + (dst >> 16 & 255) * fd) / oa);
        int g = Math.round(((src >> 8 & 255) * fs + (dst >> 8 & 255) * fd) / oa);
        int b = Math.round(((src & 255) * fs + (dst & 255) * fd) / oa);
        return Math.round(oa * 255) << 24 | r << 16 | g << 8 | b;
    }

    // ---------------------------------------------------------------- the three "gimpy" engines

    /** Water rings plus a gentle ripple (zero edges), then two noise curves if {@code noise}. */
    static BufferedImage waterRipple(BufferedImage word, boolean noise, Color noiseColor, Random rnd) {
        BufferedImage image = water(word, 1.5f, 2f, 10f, 50f);
        image = ripple(image, 2.6f, 1.7f, 15f, 5f, EDGE_ZERO);
        if (noise) {
            drawNoiseCurves(image, noiseColor, rnd);
        }
        return image;
    }

    /** A strong random ripple (clamped edges) and a soft drop shadow, then two noise curves if {@code noise}. */
    static BufferedImage shadowGimpy(BufferedImage word, boolean noise, Color noiseColor, Random rnd) {
        float yAmp = rnd.nextFloat() + 1f;
        float xWave = rnd.nextInt(7) + 8;
        float yWave = rnd.nextInt(3) + 2;
        BufferedImage image = ripple(word, 7.6f, yAmp, xWave, yWave, EDGE_CLAMP);
        image = shadow(image, 10f, 5, 1f);
        if (noise) {
            drawNoiseCurves(image, noiseColor, rnd);
        }
        return image;
    }

    /**
     * A blue/red grid over the text, then a fish-eye lens at the centre with a radius between W/4 and W/3 that
     * magnifies the middle about four times (f(s) = -0.75s^3 + 1.5s^2 + 0.25s). It draws no noise.
     */
    static BufferedImage fishEye(BufferedImage word, Random rnd) {
        int w = word.getWidth();
        int h = word.getHeight();
        Graphics2D g = word.createGraphics();
        int rowsGap = h / (h / 7 + 1);
        int colsGap = w / (w / 7 + 1);
        g.setColor(Color.BLUE);
        for (int y = rowsGap; y < h; y += rowsGap) {
            g.drawLine(0, y, w, y);
        }
        g.setColor(Color.RED);
        for (int x = colsGap; x < w; x += colsGap) {
            g.drawLine(x, 0, x, h);
        }
        g.dispose();
        int[] src = pixels(word).clone();
        int[] out = pixels(word);
        int lo = w / 4;
        int hi = w / 3;
        double radius = hi > lo ? lo + rnd.nextInt(hi - lo) : lo;
        int mx = w / 2;
        int my = h / 2;
        for (int x = 0; x < w; x++) {
            for (int y = 0; y < h; y++) {
                int rx = x - mx;
                int ry = y - my;
                double d = Math.sqrt(rx * rx + ry * ry);
                if (d < radius) {
                    double scale = d == 0 ? 0 : fishEyeFormula(d / radius) * radius / d;
                    int sx = mx + (int) (scale * rx);
                    int sy = my + (int) (scale * ry);
                    out[y * w + x] = src[sy * w + sx];
                }
            }
        }
        return word;
    }

    private static double fishEyeFormula(double s) {
        if (s < 0) {
            return 0;
        }
        if (s > 1) {
            return s;
        }
        return -0.75 * s * s * s + 1.5 * s * s + 0.25 * s;
    }

    // ---------------------------------------------------------------- noise, background, border

    /** Kaptcha's two noise curves: a short one in the left quarter and a long one across. */
    static void drawNoiseCurves(BufferedImage image, Color color, Random rnd) {
        drawNoiseCurve(image, color, rnd, 0.1f, 0.1f, 0.25f, 0.25f);
        drawNoiseCurve(image, color, rnd, 0.1f, 0.25f, 0.5f, 0.9f);
    }

    /** A cubic curve through x = W*f1..f4 at random heights, flattened coarsely and drawn 3.6, 2.7, then 1.8 px. */
    static void drawNoiseCurve(BufferedImage image, Color color, Random rnd, float f1, float f2, float f3, float f4) {
        int w = image.getWidth();
        int h = image.getHeight();
        CubicCurve2D curve = new CubicCurve2D.Float(w * f1, h * rnd.nextFloat(), w * f2, h * rnd.nextFloat(),
                w * f3, h * rnd.nextFloat(), w * f4, h * rnd.nextFloat());
        List<float[]> points = new ArrayList<>();
        for (PathIterator it = curve.getPathIterator(null, 2); !it.isDone(); it.next()) {
            float[] c = new float[6];
            int kind = it.currentSegment(c);
            if (kind == PathIterator.SEG_MOVETO || kind == PathIterator.SEG_LINETO) {
                points.add(new float[] {c[0], c[1]});
            }
        }
        Graphics2D g = image.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setColor(color);
        for (int i = 0; i < points.size() - 1; i++) {
            if (i < 3) {
                g.setStroke(new BasicStroke(0.9f * (4 - i)));
            }
            float[] a = points.get(i);
            float[] b = points.get(i + 1);
            g.drawLine((int) a[0], (int) a[1], (int) b[0], (int) b[1]);
        }
        g.dispose();
    }

    /** The text over a diagonal gradient from {@code from} (top left) to {@code to} (bottom right); RGB result. */
    static BufferedImage onGradient(BufferedImage text, Color from, Color to) {
        int w = text.getWidth();
        int h = text.getHeight();
        BufferedImage out = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = out.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setRenderingHint(RenderingHints.KEY_COLOR_RENDERING, RenderingHints.VALUE_COLOR_RENDER_QUALITY);
        g.setRenderingHint(RenderingHints.KEY_RENDERING, RenderingHints.VALUE_RENDER_QUALITY);
        g.setPaint(new GradientPaint(0, 0, from, w, h, to));
        g.fill(new Rectangle2D.Double(0, 0, w, h));
        g.drawImage(text, 0, 0, null);
        g.dispose();
        return out;
    }

    /** A 1-px frame on all four sides. */
    static void drawBorder(BufferedImage image, Color color) {
        int w = image.getWidth();
        int h = image.getHeight();
        Graphics2D g = image.createGraphics();
        g.setColor(color);
        g.draw(new Line2D.Double(0, 0, 0, w));
        g.draw(new Line2D.Double(0, 0, w, 0));
        g.draw(new Line2D.Double(0, h - 1, w, h - 1));
        g.draw(new Line2D.Double(w - 1, h - 1, w - 1, 0));
        g.dispose();
    }
}
