/// The default prompt set of `qwen-quant calibrate`: 256 image prompts, English and Chinese, short
/// and long, photographs, illustrations, posters with text to render, product shots and scenes.
/// 48 are written out; the other 208 combine a subject, a setting and a style in a fixed order, so
/// the set is the same on every machine. Use `--prompts FILE` for a set matching your own workload.
public enum CalibrationPrompts {
    static let written: [String] = [
        "a red fox in the snow at dawn, soft light, shallow depth of field",
        "A coffee shop storefront with a chalkboard sign that reads \"Fresh Bread Daily\", morning street, photorealistic",
        "一只橘猫趴在窗台上晒太阳，窗外是下雨的城市街道，电影感光影",
        "isometric illustration of a tiny floating island with a lighthouse, pastel colors",
        "a movie poster titled \"THE LAST ORBIT\" with an astronaut silhouette against a giant ringed planet, bold typography",
        "close-up macro photograph of dew drops on a spider web, backlit, bokeh",
        "a bustling night market in Taipei, neon signs, steam rising from food stalls, wide angle",
        "watercolor painting of a quiet harbor with fishing boats at sunset",
        "product photo of a matte black wireless headphone on a marble surface, studio lighting, minimal",
        "中国山水画风格的云雾群山，远处有一座小亭子，水墨淡彩",
        "a hand-lettered wedding invitation card that says \"Anna & Li, June 14\", floral border, cream paper",
        "pixel art of a knight fighting a dragon in a cave, 16-bit style",
        "an old library with tall wooden shelves, ladders, dust floating in sunbeams",
        "a children's book illustration of a bear baking a cake in a cozy kitchen",
        "aerial photograph of rice terraces in the morning mist",
        "a minimalist logo for a bakery called \"Crumb\", flat vector, two colors",
        "portrait of an elderly fisherman with a weathered face, natural light, 85mm",
        "a cyberpunk street at night in the rain, reflections on wet asphalt, flying cars",
        "infographic poster explaining the water cycle with arrows and labels, clean design",
        "a bowl of ramen with a soft-boiled egg, chopsticks, steam, top-down view",
        "春节海报，红色背景，金色大字写着“新年快乐”，灯笼和烟花",
        "oil painting of a sunflower field under a stormy sky, thick brush strokes",
        "a snow leopard resting on a rocky ledge in the Himalayas, telephoto",
        "3D render of a cute robot watering plants in a greenhouse, soft global illumination",
        "a vintage travel poster for Lisbon with trams and tiled facades, art deco style",
        "a scientist in a lab coat looking through a microscope, blue tinted lab",
        "an underwater coral reef with a sea turtle and schools of fish, sun rays",
        "a street sign at a crossroads pointing to \"Paris 412 km\" and \"Berlin 1054 km\"",
        "ukiyo-e woodblock print of a great wave with Mount Fuji in the background",
        "a modern living room with large windows, scandinavian furniture, plants, daylight",
        "一位穿汉服的女孩站在樱花树下，春风吹起花瓣，柔和色调",
        "a page of a comic book with four panels showing a detective chasing a thief across rooftops",
        "a steaming cup of tea on a wooden table beside an open notebook with handwritten notes",
        "a desert canyon at golden hour with long shadows, wide landscape",
        "a birthday cake with candles and the text \"Happy 7th Birthday, Leo!\" in blue icing",
        "a mechanical watch movement, extreme macro, gears and jewels, studio light",
        "a fantasy map of an archipelago with labeled kingdoms, parchment texture",
        "a golden retriever puppy playing with a ball in the grass, motion blur",
        "a gothic cathedral interior with stained glass windows casting colored light",
        "a flat illustration of people working together in an open office, friendly colors",
        "菜单设计：一家面馆的价目表，列出牛肉面28元、炸酱面22元、馄饨18元，简洁排版",
        "a thunderstorm over the ocean, lightning striking the water, long exposure",
        "a tiny mouse knight holding a needle sword, detailed storybook illustration",
        "a train crossing a stone viaduct in the Scottish highlands, steam locomotive",
        "a bookstore window display with a banner reading \"Summer Reading Sale - 30% Off\"",
        "abstract geometric composition of overlapping circles and triangles, bauhaus palette",
        "a farmer's market stall piled with colorful vegetables, candid photo",
        "an astronaut floating inside a space station, Earth visible through the window",
    ]

    static let subjects = [
        "an old man reading a newspaper", "a white cat", "a vintage red bicycle", "a lighthouse", "a bowl of fresh fruit",
        "a young woman with an umbrella", "a wooden sailboat", "a stack of old books", "a hummingbird", "a city skyline",
        "a pair of running shoes", "a castle on a hill", "a street musician playing violin", "a bonsai tree",
        "a glass of orange juice", "two children flying a kite", "a sports car", "a horse in a meadow",
        "a small wooden cabin", "a robot", "a dragon", "a cup of cappuccino with latte art", "a mountain lake",
        "a bakery display of pastries", "a violinist on stage", "a koi pond", "a paper lantern",
    ]
    static let settings = [
        "in a snowy forest", "on a busy city street", "at the beach at sunset", "in a cozy kitchen", "on a rooftop at night",
        "in a field of lavender", "inside a train station", "under cherry blossoms", "in a foggy harbor",
        "on a desert road", "in a rainy alley", "in a sunlit studio", "at a night market",
    ]
    static let styles = [
        "photorealistic, natural light", "watercolor painting", "oil painting, impressionist", "flat vector illustration",
        "cinematic still, dramatic lighting", "pencil sketch", "3D render, soft shadows", "anime style",
        "35mm film photograph, grain", "studio product photo", "ink wash painting", "low-poly art",
        "vintage poster", "isometric illustration", "long exposure photograph", "children's book illustration",
    ]

    /// The 256 prompts, in a fixed order.
    public static var all: [String] {
        var out = written
        var i = 0
        while out.count < 256 {
            let s = subjects[i % subjects.count], p = settings[(i * 7) % settings.count], st = styles[(i * 5) % styles.count]
            out.append("\(s) \(p), \(st)")
            i += 1
        }
        return out
    }
}
