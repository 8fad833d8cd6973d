"""The noun phrases of a caption: what an open-vocabulary detector is asked to find (``queries: caption_nouns``).

Why a heuristic and not a tagger: a part-of-speech tagger needs model data that no PyPI package of a well-kept
library ships. spaCy's English pipeline (``en_core_web_sm``) is a separate model distributed outside PyPI (PyPI
holds only unofficial re-uploads), NLTK's ``averaged_perceptron_tagger`` and TextBlob's noun-phrase extractor need
``nltk.download`` data, and stanza / flair download their models at run time; the latents stage must run offline
from the lock file alone. So the phrases come from a documented, deterministic, dependency-free rule, good enough
for detector prompts: a phrase that names nothing visible simply gets no box above the detector's score threshold.

The rule (:func:`caption_nouns`):

1. Normalise: NFKD to ASCII, lower case, CC12M's ``<PERSON>`` placeholder -> ``person``, the possessive ``'s``
   dropped (``a human's lap`` -> ``human lap``), other apostrophes removed.
2. Split into words (letters, with inner hyphens: ``t-shirt``); every punctuation mark, number, stop word
   (:data:`STOP_WORDS`: articles, pronouns, prepositions, conjunctions such as "and" / "with", auxiliaries, adverbs,
   quantifiers) or common caption verb (:data:`VERBS`) ends a chunk. One-letter words are dropped.
3. In each chunk drop the words that describe the picture rather than an object in it (:data:`VAGUE_WORDS`:
   "beautiful", "photo", "stock", "illustration", ...) and adverbs in ``-ly``, then strip verb-like words off the
   chunk's end (``-ing`` / ``-ed`` forms that are not common nouns, :data:`ING_NOUNS` / :data:`ED_NOUNS`):
   ``dog laying`` -> ``dog``, while ``running shoes`` keeps its modifier.
4. The chunk's last word is the head; the phrase is the head with up to ``max_words - 1`` words before it.
5. Phrases are kept in order of first appearance, without repeats, at most ``max_queries`` of them.

A caption with no noun phrase (every word a stop word, verb or vague word) gives an empty list: the extractor
writes no boxes for its image and counts it (``images_without_queries`` in the latents' quality record).
"""

from __future__ import annotations

import re
import unicodedata

#: phrases per caption and words per phrase when the config does not say (``max_queries``, ``max_query_words``)
DEFAULT_MAX_QUERIES = 8
DEFAULT_MAX_WORDS = 2

STOP_WORDS = frozenset("""
a an the this that these those some any each every either neither no another other such both all half
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves one ones someone something somebody anyone anything
everyone everything nobody nothing who whom whose which what whatever whoever when where why how
and or but nor so yet if then than as because while although though unless until whether also not only just
of in on at by for from with without within into onto upon over under above below across along among amongst
around about against between beneath beside besides beyond behind before after during through throughout toward
towards to via near off out up down inside outside underneath per like unlike despite except including atop
is are was were be been being am has have had having do does did doing done will would shall should can could
may might must ought let lets get gets got getting
very really quite rather too more most less least much many few several lots lot plenty enough
here there now today tonight tomorrow yesterday ago again ever never always often sometimes still already soon
away back even ever together apart
two three four five six seven eight nine ten eleven twelve twenty thirty hundred thousand million
first second third last next
""".split())

#: finite verbs common in captions (CC12M, COCO): they end a chunk ("a cat sat on the mat" -> cat, mat)
VERBS = frozenset("""
sit sits sat stand stands stood lie lies lay lays laid rest rests walk walks walked run runs ran jump jumps jumped
flew swim swims swam ride rides rode drive drives drove hold holds held carry carries carried wear wears
wore look looks looked watched see sees saw eat eats ate drank play plays played
make makes made take takes took give gives gave go goes went come comes came showed shown use uses
used grow grows grew hang hangs hung lean leans leaned covered fill fills filled contain contains
pose poses posed smile smiles smiled attend attends attended perform performs performed arrive arrives arrived
feature features featured celebrate celebrates celebrated wait waits waited stay stays stayed seem seems seemed
become becomes became say says said reads write writes wrote draws drew
""".split())

#: words that describe the picture or judge it rather than name an object in it; dropped inside a chunk
VAGUE_WORDS = frozenset("""
photo photos photograph photographs image images picture pictures pic pics illustration illustrations vector
vectors stock royalty free closeup close-up view views shot shots footage clipart clip-art icon icons
beautiful pretty nice cute lovely amazing awesome gorgeous stunning wonderful great good best better perfect
fantastic fabulous incredible adorable elegant cool fun funny happy sad new old various different same certain
isolated seamless front side left right middle center centre full high low
""".split())

#: common nouns in -ing / -ed that are not verb forms (a chunk may end with them)
ING_NOUNS = frozenset("""
building buildings ceiling ceilings painting paintings drawing drawings clothing wedding weddings morning
mornings evening evenings thing things king kings ring rings wing wings string strings spring springs swing swings
earring earrings sibling siblings pudding icing frosting railing railings awning awnings sling stuffing dumpling
dumplings lightning bedding filling fillings topping toppings housing packaging
seating lighting carving carvings landing landings crossing crossings opening
openings offering offerings setting settings stocking stockings duckling ducklings seedling seedlings
""".split())
ED_NOUNS = frozenset("""
bed beds shed sheds sled sleds seed seeds weed weeds reed reeds feed speed steed steeds tweed breed breeds red
hundred sacred bred
""".split())
#: nouns in -ly (other -ly words are adverbs and dropped)
LY_NOUNS = frozenset("family families fly belly jelly lily butterfly dragonfly firefly ally rally italy july "
                     "assembly supply holly bully reply monopoly anomaly".split())

_PERSON = re.compile(r"<\s*person\s*>")
_POSSESSIVE = re.compile(r"(?<=[a-z])'s\b|(?<=s)'(?=\s|$)")
_TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*|[0-9]+|[^\sa-z0-9]")


def _verb_like(word: str) -> bool:
    """A participle that cannot be a chunk's head: ``-ing`` / ``-ed`` forms that are not common nouns."""
    return ((word.endswith("ing") and len(word) > 4 and word not in ING_NOUNS)
            or (word.endswith("ed") and len(word) > 3 and word not in ED_NOUNS))


def _chunks(caption: str) -> list[list[str]]:
    """Runs of content words of ``caption`` between punctuation, numbers, stop words and verbs (steps 1-2)."""
    text = unicodedata.normalize("NFKD", caption).encode("ascii", "ignore").decode("ascii").lower()
    text = _PERSON.sub(" person ", text)
    text = _POSSESSIVE.sub("", text).replace("'", "")
    chunks: list[list[str]] = [[]]
    for token in _TOKEN.findall(text):
        if not token[0].isalpha() or token in STOP_WORDS or token in VERBS:
            if chunks[-1]:
                chunks.append([])
        elif len(token) > 1:
            chunks[-1].append(token)
    return [chunk for chunk in chunks if chunk]


def caption_nouns(caption: str, max_queries: int = DEFAULT_MAX_QUERIES,
                  max_words: int = DEFAULT_MAX_WORDS) -> list[str]:
    """The noun phrases of ``caption`` (the module's rule): at most ``max_queries`` distinct phrases of at most
    ``max_words`` words each, in order of first appearance; ``[]`` when the caption names nothing.

    >>> caption_nouns("Dog laying on a human's lap")
    ['dog', 'human lap']
    >>> caption_nouns("a cat sat on the mat")
    ['cat', 'mat']
    """
    if max_queries < 1 or max_words < 1:
        raise ValueError(f"max_queries={max_queries}, max_words={max_words}: both must be >= 1")
    phrases: dict[str, None] = {}
    for chunk in _chunks(str(caption)):
        words = [w for w in chunk if w not in VAGUE_WORDS and not (w.endswith("ly") and w not in LY_NOUNS)]
        while words and _verb_like(words[-1]):
            words.pop()
        if words:
            phrases.setdefault(" ".join(words[-max_words:]), None)
            if len(phrases) == max_queries:
                break
    return list(phrases)
