# Reference numbers for the moderator formula language (tests/test_formula_metafor.py).
#
# For each (dataset, formula): metafor's rma(yi, vi, mods = FORMULA, data = ..., method = "REML")
# with R's default na.action (na.omit: rows with a missing moderator are left out), and the column
# names of model.matrix(FORMULA, data). Numbers rounded to 10 significant digits.
#
# Run from this folder:  Rscript formula.R
# (writes formula_bcg.json, formula_bangertdrowns2004.json and formula_model_matrix.json)
suppressMessages({library(metafor); library(jsonlite)})

here <- "."
ctrl <- list(threshold = 1e-12, maxiter = 10000)

case <- function(dat, formula, note = "") {
  f <- as.formula(formula)
  mm <- model.matrix(f, model.frame(f, dat, na.action = na.omit))
  res <- suppressWarnings(rma(yi, vi, mods = f, data = dat, method = "REML", control = ctrl))
  list(formula = formula, note = note,
       model_matrix_colnames = I(colnames(mm)),
       coef_names = I(rownames(res$b)),
       estimate = I(signif(as.vector(res$b), 10)),
       se = I(signif(res$se, 10)),
       tau2 = signif(res$tau2, 10),
       se_tau2 = signif(res$se.tau2, 10),
       QM = signif(res$QM, 10),
       k = res$k,
       omitted_rows = I(which(!res$not.na)))
}

software <- list(R = R.version.string, metafor = as.character(packageVersion("metafor")),
                 jsonlite = as.character(packageVersion("jsonlite")), date = as.character(Sys.Date()))

write_ref <- function(name, csv, cases) {
  out <- list(dataset = name, csv = csv, method = "REML", software = software, cases = cases)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(here, paste0("formula_", name, ".json")))
}

bcg <- read.csv(file.path(here, "..", "data", "dat.bcg.csv"))
# a copy with ablat missing in rows 3 and 7 (1-based): metafor leaves those two trials out
bcg_na <- bcg
bcg_na$ablat[c(3, 7)] <- NA
write_ref("bcg", "data/dat.bcg.csv", list(
  case(bcg, "~ factor(alloc) * ablat"),
  case(bcg, "~ 0 + factor(alloc)"),
  case(bcg, "~ ablat + year"),
  case(bcg, "~ ablat + alloc", "alloc is a character column"),
  case(bcg, "~ alloc - 1"),
  case(bcg, "~ ablat:factor(alloc)", "factor without its margin: one column per level"),
  case(bcg, "~ year:ablat + ablat", "variables of an interaction in order of first appearance"),
  case(bcg, "~ factor(alloc) + ablat + factor(alloc):year"),
  case(bcg_na, "~ ablat + alloc", "ablat set to NA in rows 3 and 7")
))

bd <- read.csv(file.path(here, "..", "data", "dat.bangertdrowns2004.csv"))
write_ref("bangertdrowns2004", "data/dat.bangertdrowns2004.csv", list(
  case(bd, "~ factor(grade) + meta", "meta is missing in some rows"),
  case(bd, "~ factor(grade) * length", "length is missing in some rows; numeric code as factor"),
  case(bd, "~ subject", "a character column with many levels"),
  case(bd, "~ 0 + factor(grade):factor(feedback)", "two factors, no margins, no intercept; feedback has missing values")
))

# model.matrix alone (no fit) on a small table: column names and values of many formulas,
# including R's coding rules for factors whose margins are absent
i <- 1:24  # every cell of g x d filled, x and z spread
mm <- data.frame(x = ((i * 7) %% 11) / 2,
                 z = ((i * 5) %% 13) + 8,
                 g = rep(c("b", "a", "c"), times = 8),
                 d = rep(c(2, 1, 3, 3, 1, 2, 1, 2), each = 3),
                 stringsAsFactors = FALSE)
formulas <- c("~ x", "~ g", "~ factor(d)", "~ x + g", "~ g + x", "~ x:g", "~ g:x", "~ x + x:g", "~ g + g:x",
              "~ x * g", "~ g * factor(d)", "~ g:factor(d)", "~ 0 + g", "~ g - 1", "~ 0 + x + g",
              "~ 0 + g + factor(d)", "~ 0 + g:factor(d)", "~ x * z * g", "~ z:x + x", "~ g + x:z",
              "~ factor(d) + g + factor(d):g", "~ -1 + x:z + g", "~ x + z + x:z:g")
cases <- lapply(formulas, function(f) {
  X <- model.matrix(as.formula(f), mm)
  list(formula = f, colnames = I(colnames(X)), X = unname(X))
})
writeLines(toJSON(list(software = software, data = mm, cases = cases), digits = NA, pretty = TRUE,
                  auto_unbox = TRUE, matrix = "rowmajor"),
           file.path(here, "formula_model_matrix.json"))
