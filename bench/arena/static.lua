-- HttpArena static for wrk: GET /static/{file} over the 20 files of the
-- data set, with Accept-Encoding: br;q=1, gzip;q=0.8.
local files = {
  "reset.css", "layout.css", "theme.css", "components.css", "utilities.css",
  "analytics.js", "helpers.js", "app.js", "vendor.js", "router.js",
  "header.html", "footer.html", "regular.woff2", "bold.woff2",
  "logo.svg", "icon-sprite.svg", "hero.webp", "thumb1.webp", "thumb2.webp",
  "manifest.json",
}
local reqs, n = {}, 0

function init(args)
  for i, f in ipairs(files) do
    reqs[i] = wrk.format("GET", "/static/" .. f, { ["Accept-Encoding"] = "br;q=1, gzip;q=0.8" })
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
