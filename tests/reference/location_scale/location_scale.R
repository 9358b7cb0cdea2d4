# Reference numbers for location-scale models (tests/test_location_scale.py).
#
# metafor 3.8-1's rma(yi, vi, mods = MODS, scale = SCALE, data = ..., method = M) (log link,
# tau_i^2 = exp(z_i' alpha); Viechtbauer & Lopez-Lopez 2022), for ML and REML, with:
#   - the location part: beta, se, zval, pval, ci.lb, ci.ub, vb, QM, QMp,
#   - the scale part: alpha, se.alpha, zval.alpha, pval.alpha, ci.lb.alpha, ci.ub.alpha, va, QS, QSp,
#   - QE, QEp, fit.stats, tau2 (one per study), parms,
#   - the likelihood-ratio test of the scale part, anova(full, reduced) where reduced is the same
#     location model with scale = ~ 1 (a constant tau^2): LRT, pval, and both log likelihoods.
# Rows with a missing value in a variable of either formula are left out first (omitted_rows, 1-based).
# The optimizer is optim's BFGS run to reltol = 1e-15 (control = list(optimizer = "BFGS", ...)):
# metafor's default nlminb (rel.tol 1e-10) stops early on flat likelihoods (mp_control_ML: alpha
# off by 1e-5 relative, log likelihood lower by 1e-10), and a tighter nlminb rel.tol fails with
# convergence = 1; `nlminb_alpha` records the default fit's alpha for comparison. Standard errors
# of alpha: metafor's numDeriv Hessian (Richardson, r = 8) of the REML/ML log likelihood with beta
# profiled out. (numDeriv loses digits when a location moderator is far from 0, e.g. an
# uncentred `year` in mods: se.alpha off by 3e-4 relative, so no case puts `year` in mods.)
# Numbers written with 15 significant digits.
#
# Datasets: metadat's dat.bangertdrowns2004 (metafor's own location-scale example; rows with a
# missing `length` are left out by na.omit) and the bundled data/metapsy_depression_selfguided.csv
# (copied here as metapsy_depression_selfguided.csv by the test; the script reads it from ../../../data).
#
# Run from this folder:  Rscript location_scale.R   (writes location_scale.json)
suppressMessages({library(metafor); library(jsonlite)})

ctrl <- list(optimizer = "BFGS", reltol = 1e-15, maxit = 10000)

num <- function(x) I(as.numeric(sprintf("%.15g", as.numeric(x))))

case <- function(name, dat, data_name, mods, scale, method, test = "z") {
  fm <- as.formula(mods); fs <- as.formula(scale)
  # the reduced model must see the same studies: rows missing a variable of either formula go
  omitted <- which(!complete.cases(dat[, unique(c(all.vars(fm), all.vars(fs))), drop = FALSE]))
  if (length(omitted)) dat <- dat[-omitted, ]
  res <- suppressWarnings(rma(yi, vi, mods = fm, scale = fs, data = dat, method = method,
                              test = test, control = ctrl))
  resd <- suppressWarnings(rma(yi, vi, mods = fm, scale = fs, data = dat, method = method, test = test))
  res0 <- suppressWarnings(rma(yi, vi, mods = fm, scale = ~ 1, data = dat, method = method,
                               test = test, control = ctrl))
  a <- anova(res, res0)
  list(name = name, data = data_name, mods = mods, scale = scale, method = method, test = test,
       k = res$k, p = res$p, q = length(res$alpha), parms = res$parms,
       coef_names = I(rownames(res$beta)), scale_names = I(rownames(res$alpha)),
       beta = num(res$beta), se = num(res$se), zval = num(res$zval), pval = num(res$pval),
       ci_lb = num(res$ci.lb), ci_ub = num(res$ci.ub), vb = num(res$vb),
       QM = num(res$QM), QMp = num(res$QMp),
       alpha = num(res$alpha), se_alpha = num(res$se.alpha), zval_alpha = num(res$zval.alpha),
       pval_alpha = num(res$pval.alpha), ci_lb_alpha = num(res$ci.lb.alpha),
       ci_ub_alpha = num(res$ci.ub.alpha), va = num(res$va),
       QS = num(res$QS), QSp = num(res$QSp),
       QE = num(res$QE), QEp = num(res$QEp),
       tau2 = num(res$tau2),
       fit_ML = num(res$fit.stats$ML), fit_REML = num(res$fit.stats$REML),
       LRT = num(a$LRT), LRT_pval = num(a$pval), ll_reduced = num(a$fit.stats.r[["ll"]]),
       alpha_reduced = num(res0$alpha), nlminb_alpha = num(resd$alpha),
       omitted_rows = I(omitted))
}

bd <- dat.bangertdrowns2004
mp <- read.csv("../../../data/metapsy_depression_selfguided.csv")
# the project's 0/1 `guided` (tests/test_api_cli.py): 1 where the database codes human encouragement
mp$guided <- as.integer(mp$support == "human")
cases <- list()
for (m in c("REML", "ML")) {
  cases[[length(cases) + 1]] <- case(paste0("bd_length_", m), bd, "dat.bangertdrowns2004", "~ length", "~ length", m)
  cases[[length(cases) + 1]] <- case(paste0("bd_meta_", m), bd, "dat.bangertdrowns2004", "~ length", "~ factor(meta)", m)
  cases[[length(cases) + 1]] <- case(paste0("mp_control_", m), mp, "metapsy_depression_selfguided", "~ control", "~ control", m)
  cases[[length(cases) + 1]] <- case(paste0("mp_guided_", m), mp, "metapsy_depression_selfguided", "~ guided", "~ guided", m)
  cases[[length(cases) + 1]] <- case(paste0("mp_year_", m), mp, "metapsy_depression_selfguided", "~ 1", "~ year + rob", m)
}
cases[[length(cases) + 1]] <- case("mp_control_REML_knha", mp, "metapsy_depression_selfguided", "~ rob", "~ control", "REML", "knha")

out <- list(software = list(R = R.version.string, metafor = as.character(packageVersion("metafor"))),
            cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "location_scale.json")
