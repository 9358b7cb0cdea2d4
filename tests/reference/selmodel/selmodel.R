# Reference figures for bayes_se.frequentist.selection (selmodel); PET/PEESE: pet_peese.R.
# metafor 3.8-1; run in this folder:  Rscript selmodel.R   (writes selmodel_precise.json and selmodel_default.json)
# Every selection model is fitted twice (two files):
#  selmodel_precise.json: control = list(reltol = 1e-14, maxit = 10000, ndeps = rep(1e-6, npar),
#      intCtrl = list(rel.tol = 1e-12, subdivisions = 1000)): the maximum of the likelihood and its
#      Hessian to about 1e-7 (bayes_se is tested against these to 1e-5 relative);
#  selmodel_default.json: metafor's defaults (optim BFGS with reltol 1e-8 and finite-difference
#      gradients with step 1e-3; integrate() with rel.tol = eps^0.25 = 1.2e-4). On flat likelihoods
#      (types power, halfnorm, logistic, beta) these stop up to 1e-3 away from the maximum, and the
#      beta type's normalising integrals are only about 1e-4 accurate.
suppressMessages(library(metafor))
library(jsonlite)

hack <- read.csv("../data/dat.hackshaw1998.csv")
mpsy <- read.csv("../../../data/metapsy_depression_selfguided.csv")
data <- list(hackshaw1998 = hack, metapsy = mpsy)

cases <- list(
  list(name = "hack_step4", data = "hackshaw1998", type = "stepfun", steps = c(.05, .10, .50, 1)),
  list(name = "hack_3psm", data = "hackshaw1998", type = "stepfun", steps = 0.025),
  list(name = "hack_beta", data = "hackshaw1998", type = "beta"),
  list(name = "hack_halfnorm", data = "hackshaw1998", type = "halfnorm"),
  list(name = "hack_negexp", data = "hackshaw1998", type = "negexp"),
  list(name = "hack_logistic", data = "hackshaw1998", type = "logistic"),
  list(name = "hack_power", data = "hackshaw1998", type = "power"),
  list(name = "hack_step_two", data = "hackshaw1998", type = "stepfun", steps = c(.05, .5), alternative = "two.sided"),
  list(name = "hack_halfnorm_two", data = "hackshaw1998", type = "halfnorm", alternative = "two.sided"),
  list(name = "hack_negexp_step_prec", data = "hackshaw1998", type = "negexp", steps = 0.05, prec = "sei"),
  list(name = "hack_3psm_EE", data = "hackshaw1998", type = "stepfun", steps = 0.025, method = "EE"),
  list(name = "hack_3psm_DL", data = "hackshaw1998", type = "stepfun", steps = 0.025, method = "DL"),
  list(name = "hack_step_less", data = "hackshaw1998", type = "stepfun", steps = 0.5, alternative = "less"),
  list(name = "hack_power_less", data = "hackshaw1998", type = "power", alternative = "less"),
  list(name = "hack_halfnorm_mods", data = "hackshaw1998", type = "halfnorm", mods = "~ year"),
  list(name = "mpsy_3psm", data = "metapsy", type = "stepfun", steps = 0.025),
  list(name = "mpsy_step3", data = "metapsy", type = "stepfun", steps = c(0.025, 0.05, 0.5)),
  list(name = "mpsy_beta", data = "metapsy", type = "beta"),
  list(name = "mpsy_halfnorm", data = "metapsy", type = "halfnorm"),
  list(name = "mpsy_negexp", data = "metapsy", type = "negexp"),
  list(name = "mpsy_logistic", data = "metapsy", type = "logistic"),
  list(name = "mpsy_power", data = "metapsy", type = "power"),
  list(name = "mpsy_3psm_mods", data = "metapsy", type = "stepfun", steps = 0.025, mods = "~ rob + year"),
  list(name = "mpsy_halfnorm_mods", data = "metapsy", type = "halfnorm", mods = "~ rob")
)

num <- function(x) { x <- as.numeric(x); x[is.na(x)] <- NA; x }

fit_case <- function(cs, control) {
  dat <- data[[cs$data]]
  method <- if (is.null(cs$method)) "REML" else cs$method
  res <- if (is.null(cs$mods)) rma(yi, vi, data = dat, method = method)
         else rma(yi, vi, mods = as.formula(cs$mods), data = dat, method = method)
  args <- list(res, type = cs$type, control = control)
  if (!is.null(cs$steps)) args$steps <- cs$steps
  if (!is.null(cs$alternative)) args$alternative <- cs$alternative
  if (!is.null(cs$prec)) args$prec <- cs$prec
  warns <- character(0)
  sel <- withCallingHandlers(do.call(selmodel, args),
                             warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(beta = num(sel$beta), se = num(sel$se), zval = num(sel$zval), pval = num(sel$pval),
       ci_lb = num(sel$ci.lb), ci_ub = num(sel$ci.ub), tau2 = num(sel$tau2), se_tau2 = num(sel$se.tau2),
       delta = num(sel$delta), se_delta = num(sel$se.delta), zval_delta = num(sel$zval.delta),
       pval_delta = num(sel$pval.delta), ci_lb_delta = num(sel$ci.lb.delta), ci_ub_delta = num(sel$ci.ub.delta),
       LRT = num(sel$LRT), LRTdf = num(sel$LRTdf), LRTp = num(sel$LRTp), LRT_tau2 = num(sel$LRT.tau2),
       LRTp_tau2 = num(sel$LRTp.tau2), ll = num(sel$ll), ll0 = num(sel$ll0), QM = num(sel$QM), QMp = num(sel$QMp),
       steps = num(sel$steps), ptable = if (is.data.frame(sel$ptable)) sel$ptable$k else NULL,
       warnings = warns)
}

npar <- function(cs) {
  p <- if (is.null(cs$mods)) 1 else length(all.vars(as.formula(cs$mods))) + 1
  deltas <- if (cs$type == "stepfun") length(unique(c(cs$steps, 1))) else if (cs$type == "beta") 2 else 1
  p + 1 + deltas
}
# Rscript selmodel.R [case ...]: only the named cases, merged into the existing JSON files
only <- commandArgs(trailingOnly = TRUE)
for (config in c("precise", "default")) {
  file <- paste0("selmodel_", config, ".json")
  out <- list(metafor = as.character(packageVersion("metafor")), R = R.version.string, config = config, cases = list())
  if (length(only) && file.exists(file)) out$cases <- fromJSON(file, simplifyVector = TRUE)$cases
  for (cs in cases) {
    if (length(only) && !(cs$name %in% only)) next
    cat(config, cs$name, "\n")
    control <- if (config == "default") list() else
      list(reltol = 1e-14, maxit = 10000, ndeps = rep(1e-6, npar(cs)), intCtrl = list(rel.tol = 1e-12, subdivisions = 1000L))
    entry <- cs
    entry$control <- "metafor default"
    if (config == "precise") entry$control <- "reltol 1e-14, ndeps 1e-6, integrate rel.tol 1e-12"
    entry$result <- tryCatch(fit_case(cs, control), error = function(e) list(error = conditionMessage(e)))
    if (config == "precise" && !is.null(entry$result$error)) {
      # integrate() fails at rel.tol 1e-12 on some beta-type integrands (kinks at pval.min): 1e-8
      control$intCtrl$rel.tol <- 1e-8
      entry$control <- "reltol 1e-14, ndeps 1e-6, integrate rel.tol 1e-8 (1e-12 failed)"
      entry$result <- tryCatch(fit_case(cs, control), error = function(e) list(error = conditionMessage(e)))
    }
    out$cases[[cs$name]] <- entry
    writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE), file)
  }
}
