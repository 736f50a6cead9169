"""Stage 3: an exploratory report on the training set, as Markdown with PNG figures.

Only the training set is explored: decisions taken while looking at the test set would leak
it into the model and make the evaluation optimistic.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from sklearn.feature_extraction.text import CountVectorizer

from .config import FeatureKind
from .features import parse_dates, tokenize
from .problem_type import PROBLEM_TYPE
from .tables import dropped_section, markdown, rows_section

log = logging.getLogger(__name__)

SKEW_LIMIT = 1.0
KIND_WORDS = {"datetime": "date"}  # how the report names a kind, where not as is
MAX_CODES = 20  # whole-number columns with 3 to this many distinct values may be codes


def numeric_summary(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    summary = df[columns].describe().T
    summary["skew"] = df[columns].skew()
    return summary


def categorical_summary(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    rows = []
    for name in columns:
        counts = df[name].astype(str).value_counts()
        rows.append(
            {
                "feature": name,
                "distinct": len(counts),
                "top": counts.index[0],
                "top share": counts.iloc[0] / len(df),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


def text_summary(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    rows = []
    for name in columns:
        texts = df[name].dropna().astype(str)
        words = texts.map(lambda text: len(tokenize(text)))
        rows.append(
            {
                "feature": name,
                "median words": words.median(),
                "max words": words.max(),
                "max characters": texts.str.len().max(),
                "distinct share": texts.nunique() / max(len(texts), 1),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


def top_terms(df: pd.DataFrame, column: str, target: str, top: int = 8) -> pd.DataFrame:
    """Per target value (quartile for a continuous target), the words most typical of it:
    the largest gain in the share of texts using the word over all texts."""
    y = df[target]
    groups = pd.qcut(y, 4, duplicates="drop") if y.nunique() > 10 else y
    vectorizer = CountVectorizer(analyzer=tokenize, binary=True, min_df=min(3, len(df)))
    used = vectorizer.fit_transform(df[column].fillna("").astype(str))
    words = vectorizer.get_feature_names_out()
    overall = np.asarray(used.mean(axis=0)).ravel()
    rows = {}
    for value in sorted(groups.dropna().unique()):
        share = np.asarray(used[(groups == value).to_numpy()].mean(axis=0)).ravel()
        rows[str(value)] = ", ".join(words[np.argsort(overall - share)[:top]])
    return pd.DataFrame({"typical words": rows}).rename_axis(target)


def possible_codes(df: pd.DataFrame, features: dict[str, FeatureKind]) -> list[str]:
    """Numeric features holding a few whole numbers: counts, ratings, or codes such as an
    occupation or a party ID, whose order means nothing. Two values (0/1) are left alone:
    for them numeric and categorical are the same."""
    codes = []
    for name, kind in features.items():
        values = df[name].dropna()
        if kind != "numeric" or values.empty or not (values == values.round()).all():
            continue
        if 3 <= values.nunique() <= MAX_CODES:
            codes.append(name)
    return codes


def codes_section(codes: list[str], features: dict[str, FeatureKind]) -> list[str]:
    listing = ["features:"]
    for name, kind in features.items():
        line = yaml.safe_dump({name: "categorical" if name in codes else kind}).strip()
        listing.append(f"  {line}  # numeric if it is a count" if name in codes else f"  {line}")
    return [
        "## Possible codes",
        "",
        f"{', '.join(f'`{name}`' for name in codes)}: whole numbers with at most {MAX_CODES} "
        "distinct values, modelled as numbers. If they are counts or ratings, that is right. "
        "If they are codes (an occupation, a region, a party ID), their order and distances "
        "mean nothing: declare them categorical in `configs/problem.yaml`. `features` "
        "replaces the inference, so it lists every feature:",
        "",
        "```yaml",
        *listing,
        "```",
        "",
    ]


def missing_summary(df: pd.DataFrame) -> pd.DataFrame:
    missing = df.isna().sum()
    return pd.DataFrame({"missing": missing, "share": missing / len(df)}).sort_values(
        "share", ascending=False
    )


def save_figure(fig, path: Path, out_dir: Path) -> str:
    """Save and close a figure; return its link relative to the report."""
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.relative_to(out_dir).as_posix()


def features_figure(df: pd.DataFrame, features: dict[str, FeatureKind]):
    cols = 4
    rows = math.ceil(len(features) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, kind) in zip(axes.flat, features.items(), strict=False):
        column = df[name]
        if kind == "numeric":
            column.dropna().plot.hist(ax=ax, bins=25, color="tab:blue")
        elif kind == "categorical":
            column.astype(str).value_counts().head(10).plot.barh(ax=ax, color="tab:blue")
        elif kind == "text":
            column.dropna().map(lambda text: len(tokenize(text))).plot.hist(
                ax=ax, bins=25, color="tab:blue"
            )
            ax.set_xlabel("words")
        else:
            dates = parse_dates(column).dropna()
            ax.hist(dates, bins=25, color="tab:blue")
            ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(features) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def missing_figure(missing: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(missing) + 1.2))
    missing["share"].sort_values().plot.barh(ax=ax, color="tab:orange")
    ax.set_xlim(0, max(0.05, float(missing["share"].max()) * 1.1))
    ax.set_xlabel("share of rows missing")
    fig.tight_layout()
    return fig


def correlation_figure(df: pd.DataFrame, columns: list[str]):
    corr = df[columns].corr(method="spearman")
    size = 0.45 * len(columns) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
    ax.set_yticks(range(len(columns)), columns, fontsize=8)
    fig.colorbar(image, ax=ax, label="Spearman correlation")
    fig.tight_layout()
    return fig


def target_figure(y: pd.Series):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    PROBLEM_TYPE.plot_target(ax, y)
    ax.set_title(f"{PROBLEM_TYPE.target_noun}: {y.name}")
    fig.tight_layout()
    return fig


def heading(title: str) -> list[str]:
    """A section's heading, followed by the problem type's note on it if it has one."""
    note = PROBLEM_TYPE.eda_notes.get(title)
    return [f"## {title}", "", note, ""] if note else [f"## {title}", ""]


def opening(df: pd.DataFrame, features: dict[str, FeatureKind], target: str | None) -> str:
    """The report's first sentence: rows, features by the kinds the models read, target."""
    kinds = ", ".join(
        f"{sum(kind == wanted for kind in features.values())} {KIND_WORDS.get(wanted, wanted)}"
        for wanted in PROBLEM_TYPE.feature_kinds
    )
    noun = PROBLEM_TYPE.target_noun
    about = f"{noun} `{target}`" if target is not None else f"no {noun}s"
    return f"{len(df)} rows, {len(features)} features ({kinds}), {about}."


def target_section(y: pd.Series, out_dir: Path) -> list[str]:
    link = save_figure(target_figure(y), out_dir / "figures" / "target.png", out_dir)
    return [*heading("Target"), f"![target]({link})", ""]


def numeric_section(df: pd.DataFrame, features: dict[str, FeatureKind]) -> list[str]:
    """Summary statistics, the skewed features and the possible codes."""
    summary = numeric_summary(df, [n for n, k in features.items() if k == "numeric"])
    skewed = summary.index[summary["skew"].abs() > SKEW_LIMIT].tolist()
    lines = [*heading("Numeric features"), markdown(summary), ""]
    if skewed:
        lines += [
            f"Skewed (|skew| > {SKEW_LIMIT:g}): {', '.join(skewed)}. Outliers pull a standard "
            "scaler; consider `preprocessing.scaler: robust` in configs/params.yaml.",
            "",
        ]
    codes = possible_codes(df, features)
    return lines + (codes_section(codes, features) if codes else [])


def text_section(df: pd.DataFrame, text: list[str], target: str) -> list[str]:
    """Length and variety of each text feature, and its words most typical of each target."""
    lines = [*heading("Text features"), markdown(text_summary(df, text)), ""]
    for name in text:
        lines += [
            f"Words most typical of each target value in `{name}` (share of texts using "
            "the word, above its share in all texts):",
            "",
            markdown(top_terms(df, name, target)),
            "",
        ]
    return lines


def distributions_section(
    df: pd.DataFrame, features: dict[str, FeatureKind], missing: pd.DataFrame, out_dir: Path
) -> list[str]:
    figures = out_dir / "figures"
    shapes = save_figure(features_figure(df, features), figures / "features.png", out_dir)
    gaps = save_figure(missing_figure(missing), figures / "missing.png", out_dir)
    return [
        *heading("Feature distributions"),
        f"![features]({shapes})",
        "",
        *heading("Missing values"),
        markdown(missing),
        "",
        f"![missing]({gaps})",
        "",
    ]


def correlations_section(df: pd.DataFrame, columns: list[str], out_dir: Path) -> list[str]:
    """Spearman correlations: a figure and the strongest pairs."""
    path = out_dir / "figures" / "correlations.png"
    link = save_figure(correlation_figure(df, columns), path, out_dir)
    strongest = strongest_pairs(df[columns].corr(method="spearman"))
    lines = [*heading("Correlations"), f"![correlations]({link})", ""]
    return lines + [f"- `{a}` ~ `{b}`: {r:+.2f}" for a, b, r in strongest] + [""]


def report(
    df: pd.DataFrame,
    features: dict[str, FeatureKind],
    target: str | None,
    out_dir: Path,
    dropped: dict[str, str] | None = None,
    cleaning: dict | None = None,
) -> Path:
    """Write out_dir/README.md with summary tables and figures; return its path.

    The problem type may describe its target in sections of its own (`eda_sections`), in
    place of the generic target section and of the target among the correlations."""
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    numeric = [n for n, k in features.items() if k == "numeric"]
    categorical = [n for n, k in features.items() if k == "categorical"]
    text = [n for n, k in features.items() if k == "text"]
    labelled = [target] if target in df.columns else []  # unlabelled data has none
    own = PROBLEM_TYPE.eda_sections(df, features, target, out_dir)
    numeric_target = own is None and pd.api.types.is_numeric_dtype(df[target])
    correlated = numeric + ([target] if numeric_target else [])

    lines = ["# Exploratory data analysis (training set)", "", opening(df, features, target), ""]
    if own is None:
        lines += target_section(df[target], out_dir)
    if cleaning:
        lines += rows_section(cleaning)
    if dropped:
        lines += dropped_section(dropped)
    lines += own or []
    if numeric:
        lines += numeric_section(df, features)
    if categorical:
        table = markdown(categorical_summary(df, categorical))
        lines += [*heading("Categorical features"), table, ""]
    if text:
        lines += text_section(df, text, target)
    missing = missing_summary(df[[*features, *labelled]])
    lines += distributions_section(df, features, missing, out_dir)
    if len(correlated) >= 2:
        lines += correlations_section(df, correlated, out_dir)
    out = out_dir / "README.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    log.info("wrote the EDA report %s", out)
    return out


def strongest_pairs(corr: pd.DataFrame, top: int = 5) -> list[tuple[str, str, float]]:
    upper = corr.where(np.triu(np.ones(corr.shape, dtype=bool), k=1)).stack()
    ranked = upper.reindex(upper.abs().sort_values(ascending=False).index).head(top)
    return [(a, b, float(r)) for (a, b), r in ranked.items()]
