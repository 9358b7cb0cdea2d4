# Reference numbers for tests/test_exact_three_level.py: metafor's rma.mv ML and REML fits of the
# three-level / correlated-effects model on dat.konstantopoulos2011, with V built by vcalc (constant
# within-district sampling correlation rho).
# Run from this folder: Rscript make_reference.R  (writes rma_mv_vcalc.json)
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
dat <- read.csv("../data/dat.konstantopoulos2011.csv")
dat$year_c <- (dat$year - 1980) / 10
num <- function(x) as.numeric(sprintf("%.15g", x))
out <- list(metafor = as.character(packageVersion("metafor")), R = R.version.string,
            data = "tests/reference/data/dat.konstantopoulos2011.csv",
            model = "rma.mv(yi, V, mods, random = ~ 1 | district/school), V = vcalc(vi, cluster = district, obs = school, rho = rho)",
            fits = list())
for (rho in c(0, 0.6)) {
  V <- vcalc(vi, cluster = district, obs = school, rho = rho, data = dat)
  for (mods in c("1", "year_c")) {
    for (method in c("ML", "REML")) {
      f <- as.formula(paste("~", mods))
      res <- rma.mv(yi, V, mods = f, random = ~ 1 | district/school, data = dat, method = method,
                    control = list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15, maxit = 10000))
      key <- sprintf("rho%s_%s_%s", rho, ifelse(mods == "1", "intercept", "year"), method)
      out$fits[[key]] <- list(rho = rho, mods = mods, method = method,
                              sigma2 = num(res$sigma2), beta = num(as.vector(res$beta)),
                              se = num(res$se), logLik = num(as.numeric(logLik(res))))
    }
  }
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "rma_mv_vcalc.json")
