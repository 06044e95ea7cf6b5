"""Sphinx extension: the proof index lists each result by its printed number and title.

sphinx-proof's index ("Proof Index", ``prf-prf.html``) lists every theorem, lemma and definition
by its private label (``cor-expected-robustness``), one heading per label. This replaces it with
one heading per kind (Definitions, Lemmas, Theorems, ...) and, under each, the results in the
order the book prints them: "Theorem 4 (Pruning cannot hurt the certificate)", linked to it,
with the title of the chapter that holds it.
"""

from __future__ import annotations

from collections import defaultdict

PLURALS = {"Corollary": "Corollaries", "Proof": "Proofs", "Property": "Properties"}


def _collect_titles(app, doctree) -> None:
    """Remember each numbered result's title (its directive argument) by label."""
    titles = app.env.__dict__.setdefault("proof_titles", {})
    for node in doctree.findall(lambda n: "realtype" in getattr(n, "attributes", {})):
        # the directive stores its argument formatted as " (%t)" (proof_title_format)
        titles[node["label"]] = node.get("title", "").strip().removeprefix("(").removesuffix(")")


def _purge(app, env, docname) -> None:
    titles = env.__dict__.get("proof_titles", {})
    proofs = getattr(env, "proof_list", {})
    for label in [k for k in titles if proofs.get(k, {}).get("docname") == docname]:
        titles.pop(label, None)


def _merge(app, env, docnames, other) -> None:
    env.__dict__.setdefault("proof_titles", {}).update(other.__dict__.get("proof_titles", {}))


def _number(env, values: dict) -> tuple[int, ...] | None:
    numbers = env.toc_fignumbers.get(values["docname"], {}).get(values["countertype"], {})
    return numbers.get(values["label"])


def generate(self, docnames=None):
    """The index: (heading, entries) pairs, one heading per kind of result, numbered order."""
    env = self.domain.env
    titles = env.__dict__.get("proof_titles", {})
    groups: dict[str, list] = defaultdict(list)
    for label, values in getattr(env, "proof_list", {}).items():
        if docnames and values["docname"] not in docnames:
            continue
        kind = values["realtype"].capitalize()
        number = _number(env, values)
        printed = f"{kind} {'.'.join(map(str, number))}" if number else kind
        title = titles.get(label, "")
        name = f"{printed} ({title})" if title else printed
        page = env.titles[values["docname"]].astext() if values["docname"] in env.titles else ""
        groups[kind].append(((number or (0,)),
                             (name, 0, values["docname"], label, "", "", page)))
    content = [(PLURALS.get(kind, f"{kind}s"),
                [entry for _, entry in sorted(entries, key=lambda e: e[0])])
               for kind, entries in sorted(groups.items())]
    return content, False


def setup(app) -> dict:
    from sphinx_proof.domain import ProofIndex

    ProofIndex.generate = generate
    app.connect("doctree-read", _collect_titles)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
