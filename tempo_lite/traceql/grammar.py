"""The TraceQL grammar (Tempo 3.0's TraceQL; docs/traceql.md) for parsimonious, compiled once at import.

PEG has no left recursion, so binary operators are parsed as flat `operand (op operand)*` lists and
`precedence.py` folds them (traceql.md §5.1). The lexer rules of Tempo (Go `text/scanner` plus the attribute
mode of §1.1) are expressed as regexes: keywords end at a word boundary, attribute names run until
whitespace or one of `{ } ( ) = ~ ! < > & | ^ ,`, durations are a number glued to unit letters.
"""

from __future__ import annotations

from parsimonious.grammar import Grammar

# Reserved words that are rules of their own (a keyword must not run into an identifier character).
_KEYWORDS = (
    "count avg min max sum by coalesce select rate count_over_time min_over_time max_over_time "
    "avg_over_time sum_over_time quantile_over_time histogram_over_time compare topk bottomk with "
    "true false nil ok error unset unspecified internal server client producer consumer minInt maxInt"
).split()

_STATIC_KEYWORDS = "true false nil ok error unset unspecified internal server client producer consumer minInt maxInt"
_SCOPED_INTRINSICS = {
    "span": "duration name kind statusMessage status id parentID childCount",
    "trace": "duration rootName rootService id",
    "event": "name timeSinceStart",
    "link": "traceID spanID",
    "instrumentation": "name version",
}
_BARE_INTRINSICS = (
    "duration name statusMessage status kind rootName rootServiceName traceDuration "
    "nestedSetLeft nestedSetRight nestedSetParent childCount parent"
)


def _alternation(words: str) -> str:
    # Longest first so that e.g. `statusMessage` is not cut to `status` (a boundary check follows).
    return "|".join(sorted(words.split(), key=len, reverse=True))


_SCOPED_RE = "|".join(f"{scope}:(?:{_alternation(names)})" for scope, names in _SCOPED_INTRINSICS.items())

GRAMMAR_TEXT = (
    r"""
query              = _ root
root               = metrics_root / pipeline_root / scalar_pipeline_root
metrics_root       = spanset_pipeline _ pipe _ metrics_aggregation second_stage* hints? _ eof
pipeline_root      = spanset_pipeline hints? _ eof
scalar_pipeline_root = scalar_pipeline_filter hints? _ eof

# ---- spanset pipelines
spanset_pipeline   = pipeline_head pipeline_tail*
pipeline_tail      = _ pipe _ pipeline_stage
pipeline_head      = spanset_expression / scalar_filter / group_op / select_op
pipeline_stage     = spanset_expression / scalar_filter / group_op / coalesce_op / select_op
spanset_expression = spanset_operand spanset_tail*
spanset_tail       = _ spanset_op _ spanset_operand
spanset_operand    = spanset_filter / paren_pipeline
paren_pipeline     = lparen _ spanset_pipeline _ rparen
spanset_filter     = lbrace _ field_expression? _ rbrace
spanset_op         = ~r"&>>|&<<|!>>|!<<|>>|<<|&&|\|\||&>|&<|&~|!>|!<|!~|>|<|~"

group_op           = kw_by _ lparen _ field_expression _ rparen
coalesce_op        = kw_coalesce _ lparen _ rparen
select_op          = kw_select _ lparen _ attribute_ref select_more* _ rparen
select_more        = _ comma _ attribute_ref

# ---- scalar filters inside pipelines: count() > 1, avg(duration) = 1h
scalar_filter      = scalar_expression _ scalar_cmp_op _ scalar_expression
scalar_expression  = scalar_operand scalar_tail*
scalar_tail        = _ arith_op _ scalar_operand
scalar_operand     = aggregate / signed_number / paren_scalar
paren_scalar       = lparen _ scalar_expression _ rparen
aggregate          = count_aggregate / value_aggregate
count_aggregate    = kw_count _ lparen _ rparen
value_aggregate    = aggregate_name _ lparen _ field_expression _ rparen
aggregate_name     = kw_avg / kw_min / kw_max / kw_sum

# ---- top-level scalar pipeline filters: ({ a } | count()) > ({ b } | count())
scalar_pipeline_filter = scalar_pipeline_expression _ scalar_cmp_op _ scalar_pipeline_rhs
scalar_pipeline_rhs    = scalar_pipeline_expression / signed_number / static
scalar_pipeline_expression = scalar_pipeline_operand scalar_pipeline_tail*
scalar_pipeline_tail   = _ arith_op _ scalar_pipeline_operand
scalar_pipeline_operand = scalar_pipeline / paren_scalar_pipeline
scalar_pipeline        = lparen _ spanset_pipeline _ pipe _ aggregate _ rparen
paren_scalar_pipeline  = lparen _ scalar_pipeline_expression _ rparen

# ---- metrics
metrics_aggregation = rate_fn / count_over_time_fn / over_time_fn / quantile_fn / compare_fn
rate_fn            = kw_rate _ lparen _ rparen metrics_by?
count_over_time_fn = kw_count_over_time _ lparen _ rparen metrics_by?
over_time_fn       = over_time_name _ lparen _ attribute_ref _ rparen metrics_by?
over_time_name     = kw_min_over_time / kw_max_over_time / kw_sum_over_time / kw_avg_over_time
                   / kw_histogram_over_time
quantile_fn        = kw_quantile_over_time _ lparen _ attribute_ref quantile_arg+ _ rparen metrics_by?
quantile_arg       = _ comma _ unsigned_number
compare_fn         = kw_compare _ lparen _ spanset_filter compare_top? _ rparen
compare_top        = _ comma _ integer compare_window?
compare_window     = _ comma _ integer _ comma _ integer
metrics_by         = _ kw_by _ lparen _ attribute_ref by_more* _ rparen
by_more            = _ comma _ attribute_ref
second_stage       = topk_stage / metrics_filter
topk_stage         = _ pipe _ topk_name _ lparen _ integer _ rparen
topk_name          = kw_topk / kw_bottomk
metrics_filter     = _ scalar_cmp_op _ signed_number

# ---- hints
hints              = _ kw_with _ lparen _ hint hint_more* _ rparen
hint_more          = _ comma _ hint
hint               = identifier _ assign _ hint_value
hint_value         = signed_number / static
identifier         = ~r"[A-Za-z_][A-Za-z0-9_]*"

# ---- field expressions: a flat `operand (op operand)*` list, folded by precedence in precedence.py
# (one rule level per operand instead of one per precedence level: ~3x faster on long chains)
field_expression   = fe_operand fe_tail*
fe_tail            = _ fe_binop _ fe_operand
fe_operand         = fe_prefix* fe_primary
fe_prefix          = prefix_op _
prefix_op          = ~r"[-!]"
fe_primary         = paren_field / static / attribute / intrinsic
paren_field        = lparen _ field_expression _ rparen
fe_binop           = ~r"&&|\|\||=~|!~|!=|<=|>=|=|<|>|[-+*/%^]"
scalar_cmp_op      = ~r"!=|<=|>=|=|<|>"
arith_op           = ~r"[-+*/%^]"

# ---- names
attribute_ref      = attribute / intrinsic
attribute          = scope_prefix attribute_name
scope_prefix       = ~r"parent\.(?:span\.|resource\.)?|span\.|resource\.|event\.|link\.|instrumentation\.|\."
attribute_name     = ~r'(?:[^\s{}()=~!<>&|^,"]+|"(?:[^"\\]|\\.)*")+'
intrinsic          = ~r"(?:SCOPED_INTRINSICS|BARE_INTRINSICS)(?![\w])"

# ---- literals
static             = duration / float / integer / string / static_keyword
signed_number      = minus? unsigned_number
unsigned_number    = duration / float / integer
minus              = "-" _
static_keyword     = ~r"(?:STATIC_KEYWORDS)(?![\w])"
duration           = ~r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[0-9.]*[nsumhdwy\u00b5\u03bc][0-9.nsumhdwy\u00b5\u03bc]*"
float              = ~r"(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?(?![\w.])"
                   / ~r"[0-9]+[eE][-+]?[0-9]+(?![\w.])"
integer            = ~r"[0-9]+(?![\w.])"
string             = ~r'"(?:[^"\\\n]|\\.)*"' / ~r"`[^`]*`"

# Whitespace and Go comments.
_                  = ~r"(?:\s+|//[^\n]*|/\*.*?\*/)*"s
eof                = !~r"."s
# Punctuation as named rules, so that syntax errors can say which token was expected.
lbrace             = "{"
rbrace             = "}"
lparen             = "("
rparen             = ")"
pipe               = "|"
comma              = ","
assign             = "="
""".replace("STATIC_KEYWORDS", _alternation(_STATIC_KEYWORDS))
    .replace("SCOPED_INTRINSICS", _SCOPED_RE)
    .replace("BARE_INTRINSICS", _alternation(_BARE_INTRINSICS))
)

GRAMMAR_TEXT += "".join(f'kw_{kw} = ~r"{kw}(?![\\w])"\n' for kw in _KEYWORDS)

GRAMMAR = Grammar(GRAMMAR_TEXT)
