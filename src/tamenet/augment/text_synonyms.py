"""The built-in synonym map of text augmentation: a small, hand-checked map of common English review words.

Entries replace a word by one that keeps the sentence's meaning and its sentiment (no antonym, no change of
polarity or strength beyond a near-synonym); words are in lower case. A caller's own map
(`augment_texts(..., synonyms=...)`) replaces this one.
"""

from __future__ import annotations

_GROUPS = (
    "good fine decent nice", "great excellent superb terrific", "bad poor lousy", "terrible awful dreadful horrible",
    "happy glad pleased", "sad unhappy", "big large huge", "small little tiny", "fast quick speedy",
    "slow sluggish", "easy simple effortless", "hard difficult tough", "cheap inexpensive", "expensive pricey costly",
    "beautiful lovely gorgeous", "ugly unattractive", "funny amusing hilarious", "boring dull tedious",
    "interesting intriguing fascinating", "movie film picture", "film movie", "phone handset",
    "food meal dishes", "place spot venue", "restaurant eatery", "staff employees crew", "waiter server",
    "price cost", "product item", "story plot storyline", "actor performer", "actors cast performers",
    "buy purchase", "bought purchased", "like enjoy", "liked enjoyed", "love adore", "loved adored",
    "hate detest loathe", "hated detested loathed", "think believe", "want wish", "use utilize",
    "used utilized", "work function", "works functions", "worked functioned", "get obtain", "got received",
    "make create", "made created", "say state", "said stated", "tell inform", "told informed",
    "try attempt", "tried attempted", "start begin", "started began", "end finish", "ended finished",
    "quickly rapidly swiftly", "slowly leisurely", "very really truly", "totally completely entirely",
    "completely totally entirely", "extremely exceedingly", "also too additionally", "maybe perhaps possibly",
    "often frequently", "almost nearly", "definitely certainly surely", "probably likely",
    "recommend suggest", "recommended suggested", "friendly welcoming cordial", "rude impolite discourteous",
    "delicious tasty scrumptious", "tasty delicious flavorful", "bland tasteless flavorless", "fresh crisp",
    "amazing astonishing incredible", "wonderful marvelous fantastic", "fantastic wonderful fabulous",
    "awesome stunning impressive", "perfect flawless ideal", "disappointing underwhelming",
    "disappointed dissatisfied", "annoying irritating bothersome", "stupid dumb foolish", "smart clever bright",
    "quality caliber", "problem issue trouble", "problems issues troubles", "battery cell",
    "headset earpiece", "screen display", "case cover", "charger adapter", "sound audio",
    "service assistance", "experience encounter", "time moment", "day afternoon", "year twelvemonth",
    "people folks persons", "friend pal buddy", "job task", "way manner method", "thing item object",
    "things items objects", "area region zone", "home house residence", "car vehicle automobile",
    "money cash funds", "ending conclusion finale", "scene sequence", "character figure role",
    "music soundtrack score", "show programme", "season series", "script screenplay",
    "director filmmaker", "watch view", "watched viewed", "see notice", "saw noticed", "seen viewed",
    "look appear", "looks appears", "looked appeared", "feel sense", "felt sensed", "come arrive",
    "came arrived", "go proceed", "went proceeded", "leave depart", "left departed", "give provide",
    "gave provided", "keep retain", "kept retained", "find discover", "found discovered",
    "strong sturdy robust", "weak feeble flimsy", "clean spotless tidy", "dirty filthy grimy",
    "loud noisy", "quiet silent hushed", "hot warm", "cold chilly cool", "new fresh novel", "old aged",
    "real genuine authentic", "fake phony counterfeit", "whole entire complete", "first initial",
    "last final", "main primary principal", "important significant crucial", "enough sufficient adequate",
    "worth deserving", "overall altogether", "honestly frankly truthfully", "absolutely utterly",
    "highly greatly", "pretty fairly rather", "quite rather fairly", "just merely simply",
)


def _map(groups: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for group in groups:
        head, *rest = group.split()
        out.setdefault(head, tuple(rest))
    return out


SYNONYMS: dict[str, tuple[str, ...]] = _map(_GROUPS)
"""word -> its synonyms (the first word of each group maps to the others)."""
