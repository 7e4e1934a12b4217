"""Former home of the text generator loading and the named text rewards (kept for imports).

Everything here lives in `redge_guidance.text` (`text.models`: generator, MiniLM, sentiment head;
`text.specs`: the ``--reward`` grammar and `build_reward`); `SentimentHeadReward` is
`rewards.LinearHeadReward`. Import from there in new code.
"""

from __future__ import annotations

from .text import *  # noqa: F403
from .text import __all__  # noqa: F401
