# Reference numbers for influence() and cumul() (tests/test_influence.py).
#
# metafor 3.8-1: influence.rma.uni (rstudent, dffits, cook.d, cov.r, tau2.del, QE.del, hat, weight,
# the influential flag "inf" and the DFBETAS) and cumul.rma.uni (estimate, se, zval/tval, pval,
# ci.lb, ci.ub, Q, Qp, tau2, I2, H2 after each study in the given order) on
#   dat.bcg          (metadat; log risk ratios by escalc, as exported in ../data/dat.bcg.csv),
#   dat.hackshaw1998 (metadat; log odds ratios, ../data/dat.hackshaw1998.csv),
#   metapsy          (the bundled data/metapsy_depression_selfguided.csv of this repository).
# Convergence threshold 1e-12 (bayes_se's default), root-finding tolerance 1e-12 (PM). Full precision (digits = NA: 15 significant).
#
# Run from this folder:  Rscript influence.R   (writes influence_<dataset>.json)
suppressMessages({library(metafor); library(jsonlite)})

ctrl <- list(threshold = 1e-12, maxiter = 10000, tol = 1e-12)  # tol: the PM root finder
software <- list(R = R.version.string, metafor = as.character(packageVersion("metafor")),
                 jsonlite = as.character(packageVersion("jsonlite")), date = as.character(Sys.Date()))

fit <- function(dat, method, test, mods) {
  if (is.null(mods)) {
    rma(yi, vi, data = dat, method = method, test = test, slab = study, control = ctrl)
  } else {
    rma(yi, vi, mods = as.formula(mods), data = dat, method = method, test = test, slab = study,
        control = ctrl)
  }
}

infl_case <- function(dat, method, test = "z", mods = NULL) {
  res <- fit(dat, method, test, mods)
  inf <- influence(res)
  dfbs <- as.data.frame(inf$dfbs)
  list(method = method, test = test, mods = mods,
       coef_names = I(rownames(res$beta)),
       slab = I(as.character(inf$inf$slab)),
       rstudent = I(inf$inf$rstudent), dffits = I(inf$inf$dffits), cook_d = I(inf$inf$cook.d),
       cov_r = I(inf$inf$cov.r), tau2_del = I(inf$inf$tau2.del), QE_del = I(inf$inf$QE.del),
       hat = I(inf$inf$hat), weight = I(inf$inf$weight), inf = I(inf$is.infl),
       dfbetas = lapply(as.list(dfbs), I))
}

cumul_case <- function(dat, method, test = "z", order = NULL) {
  res <- fit(dat, method, test, NULL)
  cu <- if (is.null(order)) cumul(res) else cumul(res, order = dat[[order]])
  stat <- if (is.null(cu$zval)) cu$tval else cu$zval
  list(method = method, test = test, order = order,
       slab = I(as.character(cu$slab)),
       estimate = I(cu$estimate), se = I(cu$se), stat = I(stat), pval = I(cu$pvals),
       ci_lower = I(cu$ci.lb), ci_upper = I(cu$ci.ub), Q = I(cu$Q), Qp = I(cu$Qp),
       tau2 = if (is.null(cu$tau2)) NULL else I(cu$tau2), I2 = I(cu$I2), H2 = I(cu$H2))
}

write_ref <- function(name, csv, dat, influence, cumul) {
  out <- list(dataset = name, csv = csv, software = software, influence = influence, cumul = cumul)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
             paste0("influence_", name, ".json"))
}

bcg <- read.csv(file.path("..", "data", "dat.bcg.csv"))
write_ref("bcg", "data/dat.bcg.csv", bcg,
  influence = list(
    infl_case(bcg, "REML"), infl_case(bcg, "DL"), infl_case(bcg, "ML"), infl_case(bcg, "EE"),
    infl_case(bcg, "PM"), infl_case(bcg, "HE"), infl_case(bcg, "SJ"),
    infl_case(bcg, "REML", "knha"),
    infl_case(bcg, "REML", mods = "~ ablat"), infl_case(bcg, "DL", mods = "~ ablat"),
    infl_case(bcg, "EE", mods = "~ ablat"), infl_case(bcg, "ML", mods = "~ ablat + year"),
    infl_case(bcg, "REML", "knha", mods = "~ ablat + factor(alloc)")),
  cumul = list(
    cumul_case(bcg, "REML"), cumul_case(bcg, "REML", order = "year"), cumul_case(bcg, "DL", order = "year"),
    cumul_case(bcg, "ML", order = "year"), cumul_case(bcg, "EE", order = "year"),
    cumul_case(bcg, "PM", order = "ablat"), cumul_case(bcg, "REML", "knha", order = "year")))

hack <- read.csv(file.path("..", "data", "dat.hackshaw1998.csv"))
write_ref("hackshaw1998", "data/dat.hackshaw1998.csv", hack,
  influence = list(infl_case(hack, "REML"), infl_case(hack, "DL"), infl_case(hack, "ML"),
                   infl_case(hack, "EE"), infl_case(hack, "REML", mods = "~ year")),
  cumul = list(cumul_case(hack, "REML", order = "year"), cumul_case(hack, "DL", order = "year"),
               cumul_case(hack, "EE", order = "year")))

mp <- read.csv(file.path("..", "..", "..", "data", "metapsy_depression_selfguided.csv"))
write_ref("metapsy", "../../data/metapsy_depression_selfguided.csv", mp,
  influence = list(infl_case(mp, "REML"), infl_case(mp, "DL"), infl_case(mp, "ML"), infl_case(mp, "EE"),
                   infl_case(mp, "REML", mods = "~ year + format")),
  cumul = list(cumul_case(mp, "REML", order = "year"), cumul_case(mp, "DL", order = "year"),
               cumul_case(mp, "REML", "knha")))
