"""templates_extract.py: page templates for tools/gen_extract_fixtures.py.

Each template takes (meta, blocks, body_html, head) and returns a whole page. They imitate the
structure of common publishing platforms (where the article sits, what surrounds it), with
invented names and texts; none is a copy of a real page.
"""
import html

E = html.escape


def insert_mid(body, snippet, at=0.5):
    """Puts snippet between two top-level blocks of body, near the fraction `at`."""
    parts = body.split("\n")
    k = max(1, int(len(parts) * at))
    return "\n".join(parts[:k] + [snippet] + parts[k:])


def related(titles, cls="related-posts", heading="You might also like"):
    items = "\n".join('<li><a href="/p/%d"><h3>%s</h3></a><p>%s</p></li>' % (i, E(t), E(d))
                      for i, (t, d) in enumerate(titles))
    return '<section class="%s"><h2>%s</h2><ul>%s</ul></section>' % (cls, heading, items)


RELATED = [
    ("Why I stopped batching my email", "Three weeks of answering everything at once, and what broke."),
    ("The quiet cost of a second monitor", "On attention, neck pain and fewer windows."),
    ("Notes from a very small conference", "Forty people, one room, no slides allowed."),
    ("A field guide to meetings that could be documents", "With a template you can steal."),
]

COMMENTS = [
    ("marguerite_t", "2 days ago", "This matches my experience almost exactly, although in our team the problem was "
     "less the tooling and more that nobody owned the decision. Would love a follow-up on how you got buy-in."),
    ("Devon K.", "1 day ago", "Respectfully, I think the third point is overstated. We tried the same approach "
     "last year and rolled it back after a quarter because the on-call load doubled."),
    ("oskar", "20 hours ago", "Bookmarked. Sent it to my manager with no comment, which is itself a comment."),
]


def comments_html(cls="comments"):
    items = "\n".join('<li class="comment"><div class="comment-author">%s</div><time>%s</time>'
                      '<div class="comment-body"><p>%s</p></div><a class="reply" href="#">Reply</a></li>'
                      % (E(a), E(t), E(c)) for a, t, c in COMMENTS)
    return ('<section id="comments" class="%s"><h2>3 Comments</h2><ol class="comment-list">%s</ol>'
            '<form class="comment-form"><label>Leave a reply</label><textarea></textarea>'
            '<button>Post comment</button></form></section>' % (cls, items))


COOKIE = ('<div class="cookie-banner" id="cookie-consent"><p>We use cookies to understand how readers use this '
          'site and to improve it. By clicking "Accept all" you agree to our use of analytics cookies. You can '
          'change your mind at any time in the privacy settings.</p><button>Accept all</button>'
          '<button>Only necessary</button></div>')


def newsletter(cls="newsletter-signup", text="Get the next essay in your inbox. One email a week, no tracking, "
               "unsubscribe whenever you like. Join 4,200 other readers."):
    return ('<div class="%s"><h3>Enjoying this?</h3><p>%s</p><form><input type="email" '
            'placeholder="you@example.com"><button>Subscribe</button></form></div>' % (cls, E(text)))


def site_nav(items=("Home", "Archive", "About", "Now", "Contact")):
    return '<nav class="site-nav"><ul>%s</ul></nav>' % "".join('<li><a href="/%s">%s</a></li>' % (i.lower(), i) for i in items)


def footer(site):
    return ('<footer class="site-footer"><p>&copy; 2024 %s. All rights reserved.</p><ul><li><a href="/privacy">Privacy'
            '</a></li><li><a href="/terms">Terms</a></li><li><a href="/rss">RSS</a></li></ul></footer>' % E(site))


def og(meta, site, url):
    return ('<meta property="og:title" content="%s">\n<meta property="og:site_name" content="%s">\n'
            '<meta property="og:url" content="%s">\n<meta name="author" content="%s">\n'
            '<meta property="article:published_time" content="%s">\n<link rel="canonical" href="%s">'
            % (E(meta["title"]), E(site), url, E(meta["author"]), meta["date"], url))


# ---- the platforms ----------------------------------------------------------------------------

def medium(meta, blocks, body_html, head):
    body = body_html(blocks, {"p": "pw-post-body-paragraph lk ll fr lm b ln lo", "h": "mt mu fr be mv"})
    url = "https://medium.example/@writer/%s-3f9a2c" % meta["slug"]
    return head(meta, og(meta, "Medium", url)) + """<body>
<div id="root"><div class="a b c">
<div class="l ae" role="banner"><div class="ab q"><a href="/" aria-label="Homepage"><svg viewBox="0 0 1043 593"><path d="M0 0"></path></svg></a>
<div class="ay"><input placeholder="Search"></div><a href="/new-story">Write</a><a href="/m/signin">Sign in</a></div></div>
<div class="speechify-ignore ab cp"><div class="gu">Member-only story</div></div>
<article><div class="l"><div class="l"><section><div><div class="fr fs ft fu fv"></div>
<div class="ab ca"><div class="ch bg ew ex ey ez">
<div><h1 id="b1c2" class="pw-post-title gw gx fr be gy">%(title)s</h1></div>
<div class="speechify-ignore ab cp"><div class="hb hc"><a rel="noopener follow" href="/@writer"><div class="l">%(author)s</div></a>
<span><button>Follow</button></span><div class="pw-reading-time">7 min read</div><span>·</span><span data-testid="storyPublishDate">%(date_h)s</span></div>
<div class="ab cp"><div class="pw-multi-vote-count"><button>1.2K</button></div><div><button aria-label="responses">38</button></div>
<button aria-label="Add to list">Save</button><button>Listen</button><button>Share</button></div></div>
%(body)s
</div></div></div></section></div></div></article>
<div class="ab ca"><div class="ft"><ul class="tag-list"><li><a href="/tag/writing">Writing</a></li><li><a href="/tag/productivity">Productivity</a></li><li><a href="/tag/life">Life Lessons</a></li></ul>
<div class="ab"><button>1.2K</button><button>38</button></div>
<div class="author-card"><h2>Written by %(author)s</h2><p>2.3K Followers</p><p>Writes about work, tools and the people who use them. Opinions are my own and change slowly.</p><button>Follow</button></div>
<div class="recommended"><h2>More from %(author)s</h2>%(related)s</div>
<div><h2>Recommended from Medium</h2><p>Lists</p><p>Staff Picks</p><p>642 stories · 1,027 saves</p></div>
</div></div>
<footer><a href="/help">Help</a><a href="/status">Status</a><a href="/about">About</a><a href="/careers">Careers</a><a href="/blog">Blog</a><a href="/privacy">Privacy</a><a href="/terms">Terms</a><a href="/text-to-speech">Text to speech</a><a href="/teams">Teams</a></footer>
</div></div></body></html>
""" % dict(title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body,
           related=related(RELATED[:3], cls="l"))


def substack(meta, blocks, body_html, head):
    body = body_html(blocks, {})
    mid = ('<div class="subscription-widget-wrap"><div class="subscription-widget show-subscribe"><div class="preamble">'
           '<p>%s is a reader-supported publication. To receive new posts and support my work, consider becoming a free '
           'or paid subscriber.</p></div><form class="subscription-widget-subscribe"><input type="email" placeholder='
           '"Type your email..."><input type="submit" value="Subscribe"></form></div></div>' % E(meta["site"]))
    body = insert_mid(body, mid, 0.6)
    url = "https://%s.substack.example/p/%s" % (meta["site"].lower().replace(" ", ""), meta["slug"])
    ld = ('<script type="application/ld+json">{"@context":"https://schema.org","@type":"NewsArticle","url":"%s",'
          '"headline":"%s","datePublished":"%s","author":[{"@type":"Person","name":"%s","url":"https://substack.example/@w"}],'
          '"publisher":{"@type":"Organization","name":"%s"}}</script>' % (url, meta["title"].replace('"', '\\"'), meta["date"],
                                                                         meta["author"], meta["site"]))
    return head(meta, ld + '\n<meta property="og:title" content="%s">\n<link rel="canonical" href="%s">' % (E(meta["title"]), url)) + """<body>
<div id="entry"><div id="main" class="main typography use-theme-bg">
<div class="topbar-content"><a class="navbar-title-link" href="/">%(site)s</a><div class="navbar-buttons"><button>Subscribe</button><a href="/account/login">Sign in</a></div></div>
<div class="container"><div class="single-post-container"><div class="container"><div class="single-post">
<div class="post-header"><h1 class="post-title published">%(title)s</h1>
<div class="post-meta-item"><div class="profile-hover-card-target"><a href="https://substack.example/@w">%(author)s</a></div><div class="pencraft">%(date_h)s</div></div>
<div class="post-ufi"><a class="like-button">142</a><a class="comment-button">27</a><a class="restack">Share</a></div></div>
<article class="typography newsletter-post post"><div class="available-content"><div dir="auto" class="body markup">
%(body)s
</div></div>
<div class="post-footer"><div class="post-ufi"><a class="like-button">142</a><a href="/comments">27</a><a>Share</a></div></div>
</article>
<div class="subscribe-footer"><p>Thanks for reading %(site)s! Subscribe for free to receive new posts and support my work.</p><form><input type="email"><input type="submit" value="Subscribe"></form></div>
<div class="comments-section"><h3>Discussion about this post</h3><div class="comment"><a>Lena V.</a><p>I keep coming back to the point about defaults. Thank you for writing this down so plainly.</p></div><div class="comment"><a>R. Okafor</a><p>Counterpoint: some of us like the chaos. But yes, mostly agree.</p></div></div>
<div class="post-footer-recommendations"><h4>Ready for more?</h4><form><input type="email"><button>Subscribe</button></form></div>
</div></div></div></div>
<div class="footer-wrap"><div class="footer"><a href="https://substack.example/privacy">Privacy</a> ∙ <a href="https://substack.example/tos">Terms</a> ∙ <a href="https://substack.example/ccpa">Collection notice</a><a>Start Writing</a><a>Get the app</a><p>Substack is the home for great culture</p></div></div>
</div></div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body)


def wordpress(meta, blocks, body_html, head):
    body = body_html(blocks, {"pre": "highlight"})
    url = "https://%s/%s/" % (meta["site"], meta["slug"])
    return head(meta, og(meta, meta["site"], url)) + """<body class="post-template-default single single-post postid-812 single-format-standard wp-embed-responsive has-sidebar">
<a class="skip-link screen-reader-text" href="#content">Skip to content</a>
<div id="page" class="site">
<header id="masthead" class="site-header"><div class="site-branding"><p class="site-title"><a href="/">%(site)s</a></p><p class="site-description">Slow notes on fast things</p></div>
<nav id="site-navigation" class="main-navigation"><button class="menu-toggle">Menu</button><div class="menu-primary-container"><ul id="primary-menu" class="menu"><li><a href="/">Home</a></li><li><a href="/blog">Blog</a></li><li><a href="/projects">Projects</a></li><li><a href="/about">About</a></li></ul></div></nav></header>
<div id="content" class="site-content"><div id="primary" class="content-area"><main id="main" class="site-main">
<article id="post-812" class="post-812 post type-post status-publish format-standard hentry category-essays">
<header class="entry-header"><h1 class="entry-title">%(title)s</h1><div class="entry-meta"><span class="posted-on">Posted on <a href="%(url)s" rel="bookmark"><time class="entry-date published" datetime="%(date)s">%(date_h)s</time></a></span><span class="byline"> by <span class="author vcard"><a class="url fn n" href="/author/%(slug)s">%(author)s</a></span></span></div></header>
<div class="entry-content">
%(body)s
<div class="sharedaddy sd-sharing-enabled"><div class="robots-nocontent sd-block sd-social sd-social-icon-text sd-sharing"><h3 class="sd-title">Share this:</h3><div class="sd-content"><ul><li><a class="share-twitter" href="#"><span>Twitter</span></a></li><li><a class="share-facebook" href="#"><span>Facebook</span></a></li><li><a class="share-email" href="#"><span>Email</span></a></li></ul></div></div></div>
<div id="jp-post-flair" class="sharedaddy sd-like-enabled"><div class="sharedaddy sd-block sd-like"><h3 class="sd-title">Like this:</h3><div class="likes-widget-placeholder">Loading...</div></div></div>
</div>
<footer class="entry-footer"><span class="cat-links">Posted in <a href="/category/essays" rel="category tag">Essays</a></span><span class="tags-links">Tagged <a href="/tag/work" rel="tag">work</a>, <a href="/tag/habits" rel="tag">habits</a></span></footer>
</article>
<nav class="navigation post-navigation"><h2 class="screen-reader-text">Post navigation</h2><div class="nav-links"><div class="nav-previous"><a href="/prev">Previous post: On keeping a work log</a></div><div class="nav-next"><a href="/next">Next post: The two-pizza myth, revisited</a></div></div></nav>
%(comments)s
</main></div>
<aside id="secondary" class="widget-area"><section id="search-2" class="widget widget_search"><form role="search"><label>Search for:</label><input type="search"></form></section>
<section id="recent-posts-2" class="widget widget_recent_entries"><h2 class="widget-title">Recent Posts</h2><ul><li><a href="/a">On keeping a work log</a></li><li><a href="/b">The two-pizza myth, revisited</a></li><li><a href="/c">What the garden taught me about deadlines</a></li></ul></section>
<section id="archives-2" class="widget widget_archive"><h2 class="widget-title">Archives</h2><ul><li><a href="/2024/05">May 2024</a></li><li><a href="/2024/04">April 2024</a></li></ul></section></aside>
</div>
<footer id="colophon" class="site-footer"><div class="site-info"><a href="https://wordpress.example/">Proudly powered by WordPress</a><span class="sep"> | </span>Theme: Quillstone by Nine Lanterns.</div></footer>
</div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), author=E(meta["author"]), date=meta["date"], date_h=meta["date_h"],
           url=url, slug=meta["slug"], body=body, comments=comments_html("comments-area") if meta.get("comments") else "")


def ghost(meta, blocks, body_html, head):
    body = body_html(blocks, {})
    url = "https://%s/%s/" % (meta["site"], meta["slug"])
    ld = ('<script type="application/ld+json">{"@context":"https://schema.org","@graph":[{"@type":"WebSite","name":"%s"},'
          '{"@type":"Article","headline":"%s","datePublished":"%s","dateModified":"%s","author":{"@type":"Person","name":"%s"}}]}</script>'
          % (meta["site"], meta["title"].replace('"', '\\"'), meta["date"], meta["date"], meta["author"]))
    return head(meta, ld + '\n<link rel="canonical" href="%s">' % url) + """<body class="post-template tag-essays">
<div class="viewport"><header id="gh-head" class="gh-head outer"><div class="gh-head-inner inner"><div class="gh-head-brand"><a class="gh-head-logo" href="/">%(site)s</a><button class="gh-burger"></button></div>
<nav class="gh-head-menu"><ul class="nav"><li class="nav-home"><a href="/">Home</a></li><li class="nav-about"><a href="/about/">About</a></li><li class="nav-archive"><a href="/archive/">Archive</a></li></ul></nav>
<div class="gh-head-actions"><a class="gh-head-button" href="#/portal/signup" data-portal="signup">Subscribe</a></div></div></header>
<div class="site-content"><main id="site-main" class="site-main">
<article class="article post tag-essays">
<header class="article-header gh-canvas"><div class="article-tag post-card-tags"><span class="post-card-primary-tag"><a href="/tag/essays/">Essays</a></span></div>
<h1 class="article-title">%(title)s</h1>
<div class="article-byline"><div class="article-byline-content"><ul class="author-list"><li class="author-list-item"><a href="/author/w/" class="author-avatar">%(author_i)s</a></li></ul><div class="article-byline-meta"><h4 class="author-name"><a href="/author/w/">%(author)s</a></h4><div class="byline-meta-content"><time class="byline-meta-date" datetime="%(date_d)s">%(date_h)s</time><span class="byline-reading-time"><span class="bull">&bull;</span> 6 min read</span></div></div></div></div></header>
<section class="gh-content gh-canvas">
%(body)s
</section>
<section class="article-comments gh-canvas"><div id="ghost-comments-root"></div></section>
</article>
</main>
<aside class="read-more-wrap outer"><div class="read-more inner"><article class="post-card"><a class="post-card-content-link" href="/a/"><header class="post-card-header"><h2 class="post-card-title">A short history of my bad calendars</h2></header><div class="post-card-excerpt">Every system I tried, in order of how long it lasted.</div></a></article><article class="post-card"><a class="post-card-content-link" href="/b/"><header class="post-card-header"><h2 class="post-card-title">Letters to a new manager</h2></header><div class="post-card-excerpt">What I wish someone had told me in week one.</div></a></article></div></aside>
</div>
<footer class="site-footer outer"><div class="inner"><section class="copyright"><a href="/">%(site)s</a> &copy; 2024</section><nav class="site-footer-nav"><ul class="nav"><li><a href="/sign-up/">Sign up</a></li></ul></nav><div class="gh-powered-by"><a href="https://ghost.example/" target="_blank">Powered by Ghost</a></div></div></footer>
</div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), author=E(meta["author"]), author_i=E(meta["author"][:1]),
           date_d=meta["date"][:10], date_h=meta["date_h"], body=body)


def docs(meta, blocks, body_html, head):
    body = body_html(blocks, {"pre": "highlight"})
    toc = "".join('<li class="toctree-l1"><a class="reference internal" href="/%s.html">%s</a></li>' % (s, t) for s, t in [
        ("install", "Installation"), ("quickstart", "Quickstart"), ("config", "Configuration"), ("cli", "Command line"),
        ("api", "API reference"), ("faq", "FAQ"), ("changelog", "Changelog")])
    return head(meta, '<link rel="canonical" href="https://docs.example/%s.html">' % meta["slug"]) + """<body class="wy-body-for-nav">
<div class="wy-grid-for-nav"><nav data-toggle="wy-nav-shift" class="wy-nav-side"><div class="wy-side-scroll"><div class="wy-side-nav-search"><a href="/" class="icon icon-home">%(site)s</a><div class="version">2.4</div>
<div role="search"><form id="rtd-search-form" class="wy-form"><input type="text" name="q" placeholder="Search docs"></form></div></div>
<div class="wy-menu wy-menu-vertical" data-spy="affix" role="navigation" aria-label="Navigation menu"><p class="caption"><span class="caption-text">Contents</span></p><ul>%(toc)s</ul></div></div></nav>
<section data-toggle="wy-nav-shift" class="wy-nav-content-wrap"><nav class="wy-nav-top" aria-label="Mobile navigation menu"><a href="/">%(site)s</a></nav>
<div class="wy-nav-content"><div class="rst-content"><div role="navigation" aria-label="Page navigation"><ul class="wy-breadcrumbs"><li><a href="/" class="icon icon-home"></a> &raquo;</li><li>%(title)s</li><li class="wy-breadcrumbs-aside"><a href="/_sources/%(slug)s.rst.txt">View page source</a></li></ul><hr></div>
<div role="main" class="document" itemscope="itemscope" itemtype="http://schema.org/Article"><div itemprop="articleBody">
<section id="%(slug)s"><h1>%(title)s<a class="headerlink" href="#%(slug)s" title="Permalink to this heading">¶</a></h1>
%(body)s
</section></div></div>
<footer><div class="rst-footer-buttons" role="navigation" aria-label="Footer"><a href="/quickstart.html" class="btn btn-neutral float-left" rel="prev">Previous</a><a href="/api.html" class="btn btn-neutral float-right" rel="next">Next</a></div><hr><div role="contentinfo"><p>&copy; Copyright 2024, The %(site)s authors.</p></div>Built with <a href="https://sphinx.example/">Sphinx</a> using a theme provided by <a href="https://readthedocs.example">Read the Docs</a>.</footer>
</div></div></section></div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), slug=meta["slug"], toc=toc, body=body)


def news(meta, blocks, body_html, head):
    body = body_html(blocks, {"p": "story-paragraph"})
    ad = ('<div class="ad-slot ad-inline" data-ad-unit="mid-article"><span class="ad-label">Advertisement</span>'
          '<div class="adsbygoogle">Try Lumenfield Pro today: the planner that plans itself. Learn more.</div></div>')
    body = insert_mid(body, ad, 0.35)
    body = insert_mid(body, '<div class="related-inline"><span>Read more:</span> <a href="/x">City council approves '
                      'night bus pilot for the east districts</a></div>', 0.7)
    sections = ["World", "Politics", "Business", "Science", "Climate", "Culture", "Sport", "Opinion", "Podcasts", "Video"]
    nav = '<nav class="main-nav" role="navigation"><ul>%s</ul></nav>' % "".join('<li><a href="/%s">%s</a></li>' % (s.lower(), s) for s in sections)
    trending = "".join('<li><a href="/t/%d">%s</a></li>' % (i, t) for i, t in enumerate([
        "Storm warning issued for the northern coast as winds pick up",
        "Opinion: the case for slower trains, and fewer of them",
        "Local bakery wins national award for its rye loaf",
        "Markets steady after a week of rate speculation",
        "Five things to know before the long weekend"]))
    return head(meta, og(meta, "The Harbour Ledger", "https://ledger.example/news/%s" % meta["slug"])) + """<body class="article-page">
%(cookie)s
<div class="top-banner ad-slot" id="ad-leaderboard"><span class="ad-label">Advertisement</span><a href="https://ads.example/c?id=9">Switch your energy plan in five minutes. Compare tariffs now.</a></div>
<header class="site-header masthead"><div class="edition">Thursday, 14 March 2024 · Today's paper</div><a class="logo" href="/">The Harbour Ledger</a><div class="account"><a href="/subscribe">Subscribe from $1/week</a><a href="/login">Log in</a></div>%(nav)s</header>
<div class="breaking-news-bar"><strong>Live:</strong> <a href="/live">Follow updates on the harbour bridge closure</a></div>
<main id="main-content" class="layout">
<div class="article-wrapper">
<div class="breadcrumbs"><a href="/">Home</a> › <a href="/science">Science</a></div>
<article class="story" itemscope itemtype="https://schema.org/NewsArticle">
<header class="story-header"><h1 itemprop="headline">%(title)s</h1><p class="byline">By <a rel="author" href="/staff/x">%(author)s</a>, Science correspondent</p><time itemprop="datePublished" datetime="%(date)s">%(date_h)s</time>
<div class="share-bar"><a href="#">Share on X</a><a href="#">Share on Facebook</a><a href="#">Email</a><a href="#">Copy link</a></div></header>
<div class="story-body" itemprop="articleBody">
%(body)s
</div>
<div class="story-footer"><p class="corrections">Spotted an error? <a href="/corrections">Tell us</a>.</p><div class="topics"><a href="/t/science">Science</a><a href="/t/cities">Cities</a></div></div>
</article>
<section class="more-on-this-story related"><h2>More on this story</h2><article class="card"><a href="/m1"><h3>Engineers test floating sensor buoys in the bay</h3></a><p class="card-standfirst">The prototypes report water temperature every ten minutes.</p></article><article class="card"><a href="/m2"><h3>Q&amp;A: how the tide tables are calculated</h3></a></article><article class="card"><a href="/m3"><h3>Archive: the great flood of 1953, in photographs</h3></a></article></section>
%(comments)s
</div>
<aside class="sidebar"><div class="most-read"><h2>Most read</h2><ol>%(trending)s</ol></div><div class="ad-slot ad-mpu"><span class="ad-label">Advertisement</span><a href="https://ads.example/c?id=12">Holiday cottages by the sea from $79 a night</a></div>%(newsletter)s</aside>
</main>
<footer class="site-footer"><div class="footer-links"><a href="/about">About us</a><a href="/contact">Contact</a><a href="/jobs">Work for us</a><a href="/advertise">Advertise</a><a href="/privacy">Privacy policy</a><a href="/cookies">Cookie settings</a><a href="/terms">Terms and conditions</a></div><p>&copy; 2024 Harbour Ledger Media Ltd. Registered in the imaginary county of Westmarch.</p></footer>
</body></html>
""" % dict(cookie=COOKIE, nav=nav, title=E(meta["title"]), author=E(meta["author"]), date=meta["date"], date_h=meta["date_h"],
           body=body, comments=comments_html(), trending=trending, newsletter=newsletter("newsletter-box", "The Morning Ledger: the day's stories before your coffee. Sign up free."))


def devblog(meta, blocks, body_html, head):
    """A static-site developer blog (Hugo/Jekyll style): no article element, content in div.post-content."""
    body = body_html(blocks, {"pre": "highlight"})
    return head(meta, '<meta name="author" content="%s">\n<meta name="date" content="%s">' % (E(meta["author"]), meta["date"])) + """<body>
<div class="wrapper"><div class="header"><a class="site-title" href="/">%(site)s</a><div class="menu"><a href="/posts/">Posts</a> <a href="/tags/">Tags</a> <a href="/about/">About</a> <a href="/index.xml">RSS</a></div></div>
<div class="container"><div class="post">
<div class="post-header"><h1 class="post-title">%(title)s</h1><div class="post-info"><span>%(date_h)s</span> · <span>%(author)s</span> · <span>9 minute read</span></div></div>
<div class="toc"><strong>Table of contents</strong><ul><li><a href="#one">Setup</a></li><li><a href="#two">The loop</a></li><li><a href="#three">Results</a></li></ul></div>
<div class="post-content">
%(body)s
</div>
<div class="post-tags"><a href="/tags/c/">#c</a> <a href="/tags/performance/">#performance</a> <a href="/tags/tools/">#tools</a></div>
<div class="post-nav"><a class="prev" href="/posts/older/">&larr; Older: Profiling without a profiler</a><a class="next" href="/posts/newer/">Newer: A Makefile I am not ashamed of &rarr;</a></div>
</div></div>
<div class="footer"><p>Written by %(author)s. Content licensed CC BY 4.0. Built with a static site generator and too much coffee.</p></div>
</div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body)


def minimal(meta, blocks, body_html, head):
    """A hand-written page: no classes, no article element, a few links at the bottom."""
    body = body_html(blocks, {})
    return """<html>
<head>
<title>%(title)s</title>
</head>
<body bgcolor="#fffff0">
<h1>%(title)s</h1>
<p><i>%(date_h)s</i></p>
%(body)s
<hr>
<p><a href="index.html">back to the index</a> | <a href="mailto:me@example.org">write to me</a></p>
</body>
</html>
""" % dict(title=E(meta["title"]), date_h=meta["date_h"], body=body)


def interrupted(meta, blocks, body_html, head):
    """A blog whose body is interrupted by a cookie banner, a newsletter box and a promo."""
    body = body_html(blocks, {})
    body = insert_mid(body, COOKIE, 0.25)
    body = insert_mid(body, newsletter(), 0.5)
    body = insert_mid(body, '<div class="promo-box"><p><strong>New course:</strong> Writing for humans, in six evenings. '
                      'Early-bird tickets are 30% off until Friday.</p><a href="/course">Reserve a seat</a></div>', 0.75)
    return head(meta, og(meta, meta["site"], "https://%s/%s" % (meta["site"], meta["slug"]))) + """<body>
%(nav)s
<div class="page"><div class="blog-post">
<h1 class="title">%(title)s</h1><div class="post-meta">%(date_h)s · by %(author)s</div>
<div class="entry">
%(body)s
</div>
<div class="social-share"><span>Share this post:</span><a href="#">Twitter</a><a href="#">LinkedIn</a><a href="#">Reddit</a></div>
%(related)s
</div></div>
%(footer)s
<div class="modal-overlay popup" id="exit-intent"><div class="modal"><h2>Wait! Before you go…</h2><p>Download the free checklist: 12 questions to ask before every draft.</p><button>Send it to me</button></div></div>
</body></html>
""" % dict(nav=site_nav(), title=E(meta["title"]), date_h=meta["date_h"], author=E(meta["author"]), body=body,
           related=related(RELATED[1:]), footer=footer(meta["site"]))


def nested_divs(meta, blocks, body_html, head):
    """Nothing semantic: the article sits in nested divs with meaningless class names, beside a
    sidebar and a link list of similar size."""
    body = body_html(blocks, {})
    side = "".join('<div class="c9"><a href="/l/%d">%s</a></div>' % (i, t) for i, t in enumerate([
        "Spring catalogue", "Workshops", "Gift cards", "Shipping and returns", "Our story", "Stockists", "Wholesale",
        "Press", "Contact the studio"]))
    return head(meta) + """<body>
<div class="x1"><div class="x2"><div class="c1"><a href="/"><span>Thornbury Ceramics</span></a><div class="c2"><a href="/shop">Shop</a> <a href="/journal">Journal</a> <a href="/visit">Visit</a> <a href="/cart">Cart (0)</a></div></div>
<div class="c3"><div class="c4">%(side)s<div class="c9">Opening hours: Wed to Sun, 10 to 5</div></div>
<div class="c5"><div class="c6"><div class="c7"><div class="c8">
<h1>%(title)s</h1>
<div>%(date_h)s</div>
%(body)s
</div></div></div>
<div class="c10"><div>Filed under: <a href="/j/process">Process</a>, <a href="/j/glazes">Glazes</a></div><div><a href="/j/prev">Previous entry</a> / <a href="/j/next">Next entry</a></div></div>
</div></div>
<div class="c11"><div>Thornbury Ceramics, Unit 4, The Old Tannery</div><div>Sign up for kiln-opening announcements: <input type="email"> <button>Join</button></div><div>&copy; 2024</div></div>
</div></div></body></html>
""" % dict(side=side, title=E(meta["title"]), date_h=meta["date_h"], body=body)


def tables_layout(meta, blocks, body_html, head):
    """A 2000s table layout: navigation in one cell, the text in another, a footer row."""
    body = body_html(blocks, {})
    links = "<br>".join('<a href="/%s.html">%s</a>' % (x.lower(), x) for x in ["Home", "Articles", "Links", "Guestbook", "Webring", "Email"])
    return """<html><head><title>%(title)s - %(site)s</title><meta name="author" content="%(author)s"></head>
<body><table width="100%%" border="0" cellpadding="4">
<tr><td colspan="2" bgcolor="#003366"><font color="white" size="5">%(site)s</font></td></tr>
<tr><td width="150" valign="top" bgcolor="#eeeeee"><b>Menu</b><br>%(links)s<br><br><img src="counter.gif" alt="visitor counter"> You are visitor 004211</td>
<td valign="top"><h2>%(title)s</h2>
%(body)s
</td></tr>
<tr><td colspan="2" align="center"><small>Best viewed in any browser. Last updated %(date_h)s. <a href="#top">Top</a></small></td></tr>
</table></body></html>
""" % dict(title=E(meta["title"]), site=E(meta["site"]), author=E(meta["author"]), links=links, date_h=meta["date_h"], body=body)


def linkedin(meta, blocks, body_html, head):
    body = body_html(blocks, {})
    return head(meta, og(meta, "LinkedIn", "https://linkedin.example/pulse/%s" % meta["slug"])) + """<body>
<header class="global-nav"><a href="/feed">Home</a><a href="/mynetwork">My Network</a><a href="/jobs">Jobs</a><a href="/messaging">Messaging</a><a href="/notifications">Notifications</a></header>
<main class="main" id="main-content" role="main">
<section class="core-rail">
<div class="article-main__content">
<h1 class="article-title">%(title)s</h1>
<div class="publisher-author-card"><a href="/in/x">%(author)s</a><p>Head of Operations at Fernhill Logistics | Mentor | Speaker</p><time>%(date_h)s</time><button>Follow</button></div>
<div class="article-content" data-test-id="article-content-blocks">
%(body)s
</div>
<div class="social-action-bar"><button>Like</button><button>Comment</button><button>Repost</button><span>312 reactions · 41 comments</span></div>
</div>
</section>
<section class="right-rail"><h2>More articles by %(author)s</h2><ul><li><a href="/p/1">Hiring for curiosity</a></li><li><a href="/p/2">The warehouse at 5 a.m.</a></li></ul>
<div class="ad-banner-container"><p>Promoted</p><a href="/ad">Grow your network with Premium. Try it free for one month.</a></div></section>
</main>
<footer class="li-footer"><ul><li><a>About</a></li><li><a>Accessibility</a></li><li><a>User Agreement</a></li><li><a>Privacy Policy</a></li><li><a>Cookie Policy</a></li></ul></footer>
</body></html>
""" % dict(title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body)


def forum_essay(meta, blocks, body_html, head):
    """An essay page with footnote back-links, a long sidebar bio and a webmention list."""
    body = body_html(blocks, {})
    return head(meta, '<meta name="author" content="%s">\n<meta property="article:published_time" content="%s">'
                % (E(meta["author"]), meta["date"])) + """<body>
<div id="wrap"><div id="header"><h2 class="site"><a href="/">%(site)s</a></h2><ul id="menu"><li><a href="/essays">Essays</a></li><li><a href="/notes">Notes</a></li><li><a href="/colophon">Colophon</a></li></ul></div>
<div id="content"><div class="essay"><h1>%(title)s</h1><p class="dateline">%(date_h)s</p>
%(body)s
</div>
<div id="webmentions" class="mentions"><h3>Mentions</h3><ul><li><a href="https://a.example">a.example</a> linked to this</li><li><a href="https://b.example">b.example</a> replied: "Lovely piece."</li></ul></div>
</div>
<div id="sidebar"><h3>About</h3><p>%(author)s writes essays about craft, weather and unfinished projects from a small town by the river. She has been keeping this site since 2009.</p><h3>Elsewhere</h3><ul><li><a href="/feed">Feed</a></li><li><a href="https://mastodon.example/@x">Mastodon</a></li></ul></div>
<div id="footer">Set in a typeface I cannot afford. No cookies here.</div></div></body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body)


def devto(meta, blocks, body_html, head):
    body = body_html(blocks, {"pre": "highlight"})
    return head(meta, og(meta, "DEV Community", "https://dev.example/x/%s" % meta["slug"])) + """<body data-user-status="logged-out">
<header class="crayons-header"><a href="/" class="site-logo">DEV</a><form class="crayons-header--search"><input placeholder="Search..."></form><a href="/enter">Log in</a><a href="/enter?state=new-user">Create account</a></header>
<div class="crayons-layout crayons-layout--3-cols"><aside class="crayons-layout__sidebar-left" aria-label="Article actions"><div class="article-actions"><button>Add reaction</button> 58 <button>Jump to Comments</button> 12 <button>Save</button></div></aside>
<main id="main-content" class="crayons-layout__content">
<article class="crayons-card" id="article-show-container" data-article-id="1721">
<header class="crayons-article__header"><div class="crayons-article__subheader"><a href="/x" class="crayons-link">%(author)s</a> <span>Posted on <time datetime="%(date)s">%(date_h)s</time></span></div>
<h1 class="crayons-title">%(title)s</h1><div class="spec__tags"><a href="/t/c">#c</a><a href="/t/beginners">#beginners</a></div></header>
<div class="crayons-article__main"><div class="crayons-article__body text-styles spec__body" id="article-body">
%(body)s
</div></div>
<section id="comments" class="text-padding mb-4 crayons-card comments"><header><h2>Top comments (12)</h2></header><div class="comment__body"><p>Great write-up! One nit: the second snippet leaks if the allocation fails.</p></div><div class="comment__body"><p>Thanks, this finally made it click for me.</p></div></section>
</article>
</main>
<aside class="crayons-layout__sidebar-right"><div class="crayons-card"><h3>Read next</h3><a href="/r1"><h4>Ten regex mistakes I made so you do not have to</h4></a><a href="/r2"><h4>What I learned maintaining a tiny library for five years</h4></a></div></aside></div>
<footer class="crayons-footer"><p>DEV Community — A constructive and inclusive social network for software developers.</p><a>Home</a><a>Code of Conduct</a><a>Privacy Policy</a></footer>
</body></html>
""" % dict(title=E(meta["title"]), author=E(meta["author"]), date=meta["date"], date_h=meta["date_h"], body=body)


def newsletter_archive(meta, blocks, body_html, head):
    """A plain newsletter archive page (Buttondown-like): main > div.email-body."""
    body = body_html(blocks, {})
    return head(meta, '<meta name="author" content="%s">' % E(meta["author"])) + """<body>
<main><div class="archive-header"><a href="/">%(site)s</a> · <a href="/archive">Archive</a> · <a href="/subscribe">Subscribe</a></div>
<div class="email-detail"><h1 class="email-subject">%(title)s</h1><div class="email-meta"><time datetime="%(date)s">%(date_h)s</time></div>
<div class="email-body">
%(body)s
</div>
<div class="email-footer"><p>You are reading an archived issue of %(site)s. If a friend forwarded this to you, you can <a href="/subscribe">subscribe here</a>. Replies come straight to my inbox.</p></div></div>
<div class="subscribe-form"><form><input type="email" placeholder="your@email.com"><input type="submit" value="Subscribe"></form></div>
</main>
<footer><p>Powered by a newsletter service.</p></footer>
</body></html>
""" % dict(site=E(meta["site"]), title=E(meta["title"]), date=meta["date"], date_h=meta["date_h"], body=body)


def magazine(meta, blocks, body_html, head):
    """A magazine page: <main> holds the article and a same-size grid of teaser <article> cards;
    a pull quote repeats a sentence (class pullquote, aside)."""
    body = body_html(blocks, {})
    body = insert_mid(body, '<aside class="pullquote"><p>The clock is a story we tell the river.</p></aside>', 0.45)
    cards = "".join('<article class="teaser"><a href="/m/%d"><h3>%s</h3></a><p>%s</p><span class="teaser-author">%s</span></article>'
                    % (i, E(t), E(d), a) for i, (t, d, a) in enumerate([
                        ("The last lighthouse keepers", "A photo essay from the northern islands.", "by Ines Moreau"),
                        ("How to read a weather map", "Isobars, fronts and the lies of the colour scale.", "by Tom Achebe"),
                        ("Salt, a love letter", "On curing, brining and the patience of fish.", "by Karin Holt"),
                        ("The sound of a new city", "Recording buses, birds and building sites for a year.", "by Ji-woo Park")]))
    return head(meta, og(meta, "Longtide", "https://longtide.example/%s" % meta["slug"])) + """<body class="magazine">
<div class="skip"><a href="#content">Skip to content</a></div>
<header class="site-header"><a href="/" class="logo">Longtide</a><nav><a href="/features">Features</a><a href="/essays">Essays</a><a href="/fiction">Fiction</a><a href="/issues">Print issues</a><a href="/shop">Shop</a></nav></header>
<main id="content">
<article class="feature"><header class="feature-header"><p class="kicker">Essay</p><h1>%(title)s</h1><p class="byline">Words by <span class="author">%(author)s</span></p><time datetime="%(date)s">%(date_h)s</time></header>
<div class="feature-body">
%(body)s
</div>
<footer class="feature-footer"><p class="bio"><em>%(author)s is a contributing editor at Longtide. Her first book is out next spring.</em></p><p class="issue-note">This essay appears in Issue 14: Currents. <a href="/shop/14">Buy the print edition</a>.</p></footer>
</article>
<section class="more-from-longtide"><h2>More from Longtide</h2>%(cards)s</section>
</main>
<footer class="site-footer"><p>Longtide is an independent magazine of slow journalism.</p><a href="/about">About</a> <a href="/submit">Submissions</a> <a href="/privacy">Privacy</a></footer>
</body></html>
""" % dict(title=E(meta["title"]), author=E(meta["author"]), date=meta["date"], date_h=meta["date_h"], body=body, cards=cards)


def qa_kb(meta, blocks, body_html, head):
    """A help-centre article: body in div.article-body inside a layout of sections, a
    'was this helpful' box and a related-articles list."""
    body = body_html(blocks, {})
    return head(meta) + """<body>
<div class="hc-header"><a href="/hc">Help Centre</a><form class="search"><input type="search" placeholder="Search"></form><a href="/hc/requests/new">Submit a request</a></div>
<div class="container"><div class="breadcrumbs"><a href="/hc">Help Centre</a> &gt; <a href="/hc/billing">Billing</a> &gt; <a href="/hc/billing/invoices">Invoices</a></div>
<div class="article-container"><section class="article-sidebar"><h3>Articles in this section</h3><ul><li><a href="/1">Changing your billing address</a></li><li><a href="/2">Downloading past invoices</a></li><li><a href="/3">Why was I charged twice?</a></li><li><a href="/4">Refund timelines</a></li></ul></section>
<div class="article"><div class="article-header"><h1 class="article-title">%(title)s</h1><div class="article-author"><span>%(author)s</span> · Updated %(date_h)s</div></div>
<section class="article-info"><div class="article-content"><div class="article-body">
%(body)s
</div></div>
<div class="article-votes"><span>Was this article helpful?</span><button>Yes</button><button>No</button><p>27 out of 31 found this helpful</p></div>
<div class="article-more-questions">Have more questions? <a href="/hc/requests/new">Submit a request</a></div></section>
<section class="related-articles"><h3>Related articles</h3><ul><li><a href="/5">Setting up team billing</a></li><li><a href="/6">Tax IDs on invoices</a></li></ul></section></div></div></div>
<footer class="footer"><a href="/">Fernhill Support</a><span>Powered by a help desk.</span></footer>
</body></html>
""" % dict(title=E(meta["title"]), author=E(meta["author"]), date_h=meta["date_h"], body=body)


TEMPLATES = {
    "medium": medium, "substack": substack, "wordpress": wordpress, "ghost": ghost, "docs": docs, "news": news,
    "devblog": devblog, "minimal": minimal, "interrupted": interrupted, "nested_divs": nested_divs,
    "tables_layout": tables_layout, "linkedin": linkedin, "forum_essay": forum_essay, "devto": devto,
    "newsletter_archive": newsletter_archive, "magazine": magazine, "qa_kb": qa_kb,
}
