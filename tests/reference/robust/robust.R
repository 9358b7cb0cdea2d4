# Reference numbers for cluster-robust inference (tests/test_robust.py).
#
# clubSandwich 0.5.8 coef_test / conf_int / Wald_test (vcov = "CR2", Satterthwaite df, HTZ),
# metafor 3.8-1 robust() (CR1 = adjust=TRUE, CR0 = adjust=FALSE, and clubSandwich=TRUE) and
# robumeta 2.0 robu() (CORR and HIER weights, small = TRUE/FALSE) on
#   dat.konstantopoulos2011 (metadat; ../data/dat.konstantopoulos2011.csv), rma.mv ~ 1 | district/school
#   dat.bcg (metadat; ../data/dat.bcg.csv), rma.uni REML, cluster = trial and pairs of trials
#   corrdat, hierdat (robumeta's example data, written here as robumeta_corrdat.csv / robumeta_hierdat.csv)
#   self_efficacy_between.csv (copy of data/self_efficacy_sim/between.csv, bayes_se's simulated data)
#   dat.berkey1998 (metadat; ../data/dat.berkey1998.csv and _V.csv), rma.mv struct = "UN", cluster = trial
#   ../../../data/metapsy_depression_selfguided.csv (bayes_se's bundled Metapsy extract), cluster = study_id
# Numbers as 15 significant digits (jsonlite digits = NA).
#
# Run from this folder:  Rscript robust.R   (writes robust.json, robumeta_corrdat.csv, robumeta_hierdat.csv)
suppressMessages({library(metafor); library(clubSandwich); library(robumeta); library(jsonlite)})

ctrl_uni <- list(threshold = 1e-12, maxiter = 10000)
ctrl_mv <- list()  # nlminb defaults: converged to ~1e-10 here (tighter rel.tol stops with convergence = 1)

cs_block <- function(res, cluster, type) {
  vc <- vcovCR(res, cluster = cluster, type = type)
  ct <- coef_test(res, vcov = vc, test = "Satterthwaite")
  ci <- conf_int(res, vcov = vc, test = "Satterthwaite", level = 0.95)
  out <- list(type = type, coef_names = I(rownames(res$b)), estimate = I(as.vector(res$b)),
              se = I(ct$SE), tval = I(ct$tstat), df = I(ct$df_Satt), pval = I(ct$p_Satt),
              ci_lower = I(ci$CI_L), ci_upper = I(ci$CI_U), vcov = unclass(as.matrix(vc)))
  attributes(out$vcov) <- list(dim = dim(as.matrix(vc)))
  if (res$p > 1) {
    btt <- if (res$int.incl) 2:res$p else 1:res$p
    wt <- Wald_test(res, constraints = constrain_zero(btt), vcov = vc, test = "HTZ")
    out$wald_HTZ <- list(coefs = I(btt), Fstat = wt$Fstat, delta = wt$delta, df_num = wt$df_num,
                         df_denom = wt$df_denom, pval = wt$p_val)
  }
  out
}

metafor_block <- function(res, cluster, adjust) {
  r <- robust(res, cluster = cluster, adjust = adjust)
  list(vbest = r$vbest, coef_names = I(rownames(r$b)), estimate = I(as.vector(r$b)), se = I(r$se),
       tval = I(r$zval), df = r$dfs, pval = I(r$pval), ci_lower = I(r$ci.lb), ci_upper = I(r$ci.ub),
       QM = r$QM, QMdf = I(r$QMdf), QMp = r$QMp, n_clusters = r$n)
}

metafor_cs_block <- function(res, cluster) {
  r <- robust(res, cluster = cluster, clubSandwich = TRUE)
  list(se = I(r$se), tval = I(r$zval), df = I(r$dfs), pval = I(r$pval), ci_lower = I(r$ci.lb),
       ci_upper = I(r$ci.ub), QM = r$QM, QMdf = I(r$QMdf), QMp = r$QMp)
}

model_block <- function(res) {
  out <- list(estimate = I(as.vector(res$b)), se = I(res$se), coef_names = I(rownames(res$b)))
  if (inherits(res, "rma.mv")) out$sigma2 <- I(res$sigma2) else out$tau2 <- res$tau2
  out
}

all_blocks <- function(res, cluster) {
  list(model = model_block(res),
       CR2 = cs_block(res, cluster, "CR2"),
       metafor_clubSandwich = metafor_cs_block(res, cluster),
       CR1 = metafor_block(res, cluster, TRUE),
       CR0 = metafor_block(res, cluster, FALSE))
}

out <- list()
out$software <- list(R = R.version.string, metafor = as.character(packageVersion("metafor")),
                     clubSandwich = as.character(packageVersion("clubSandwich")),
                     robumeta = as.character(packageVersion("robumeta")),
                     jsonlite = as.character(packageVersion("jsonlite")), date = as.character(Sys.Date()))

# ---- dat.konstantopoulos2011: three-level model, cluster = district
k11 <- read.csv("../data/dat.konstantopoulos2011.csv")
m <- rma.mv(yi, vi, random = ~ 1 | district/school, data = k11, method = "REML", control = ctrl_mv)
out$konstantopoulos2011 <- all_blocks(m, k11$district)
m <- rma.mv(yi, vi, mods = ~ I(year - 1990), random = ~ 1 | district/school, data = k11, method = "REML",
            control = ctrl_mv)
out$konstantopoulos2011_year <- all_blocks(m, k11$district)

# ---- dat.bcg: rma.uni, clusters of one trial (heteroscedasticity-robust) and pairs of trials
bcg <- read.csv("../data/dat.bcg.csv")
bcg$pair <- ceiling(bcg$trial / 2)
m <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", control = ctrl_uni)
out$bcg_ablat_trial <- all_blocks(m, bcg$trial)
out$bcg_ablat_pair <- all_blocks(m, bcg$pair)
m <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "REML", control = ctrl_uni)
out$bcg_ablat_year_pair <- all_blocks(m, bcg$pair)
m <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", test = "knha", control = ctrl_uni)
out$bcg_ablat_pair_knha <- all_blocks(m, bcg$pair)   # metafor's CR0/CR1 carry the Knapp-Hartung factor
out$bcg_ablat_pair_knha$s2w <- m$s2w
m <- rma(yi, vi, data = bcg, method = "REML", control = ctrl_uni)
out$bcg_pair <- all_blocks(m, bcg$pair)
m <- rma(yi, vi, data = bcg, method = "DL")
out$bcg_DL_pair <- all_blocks(m, bcg$pair)

# ---- bayes_se's simulated self-efficacy data: several arms per trial, cluster = study_id
se <- read.csv("self_efficacy_between.csv")
se$es <- seq_len(nrow(se))
m <- rma.mv(yi, vi, mods = ~ guided + disorder, random = ~ 1 | study_id/es, data = se, method = "REML",
            control = ctrl_mv)
out$self_efficacy_mv <- all_blocks(m, se$study_id)
m <- rma(yi, vi, mods = ~ guided, data = se, method = "REML", control = ctrl_uni)
out$self_efficacy_uni <- all_blocks(m, se$study_id)

# ---- bayes_se's bundled Metapsy data (data/metapsy_depression_selfguided.csv): formats present in one or
# two trials only, so some clusters' I - H_jj are singular (CR2's generalized inverse square root)
mp <- read.csv("../../../data/metapsy_depression_selfguided.csv")
mp$es <- seq_len(nrow(mp))
m <- rma.mv(yi, vi, mods = ~ format, random = ~ 1 | study_id/es, data = mp, method = "REML", control = ctrl_mv)
out$metapsy_format_mv <- all_blocks(m, mp$study_id)

# ---- dat.berkey1998: multivariate model with full sampling covariance V and struct = "UN", cluster = trial.
# nlminb stops short of the maximum here (see tests/test_frequentist_multilevel.py); Nelder-Mead at
# reltol 1e-15 reaches it (log-likelihood equal to bayes_se's to 1e-13)
bk <- read.csv("../data/dat.berkey1998.csv")
Vbk <- as.matrix(read.csv("../data/dat.berkey1998_V.csv"))
m <- rma.mv(yi, Vbk, mods = ~ 0 + outcome, random = ~ outcome | trial, struct = "UN", data = bk, method = "REML",
            control = list(optimizer = "Nelder-Mead", reltol = 1e-15, maxit = 1e5))
out$berkey1998_UN <- all_blocks(m, bk$trial)

# ---- robumeta
robu_block <- function(r) {
  tab <- r$reg_table
  o <- list(modelweights = r$modelweights, small = r$small, coef_names = I(as.character(tab$labels)),
            estimate = I(tab$b.r), se = I(tab$SE), tval = I(tab$t), df = I(tab$dfs), pval = I(tab$prob),
            ci_lower = I(tab$CI.L), ci_upper = I(tab$CI.U), tau2 = as.numeric(r$mod_info$tau.sq),
            vcov = unname(r$VR.r), n_clusters = r$N, k = r$M)
  if (r$modelweights == "CORR") { o$rho <- r$mod_info$rho; o$I2 <- as.numeric(r$mod_info$I.2) }
  if (r$modelweights == "HIER") o$omega2 <- as.numeric(r$mod_info$omega.sq)
  o
}
data(corrdat); data(hierdat)
corr <- data.frame(esid = corrdat$esid, studyid = corrdat$studyid, effectsize = corrdat$effectsize,
                   var = corrdat$var, binge = corrdat$binge, followup = corrdat$followup,
                   males = corrdat$males, college = corrdat$college)
hier <- data.frame(esid = hierdat$esid, studyid = hierdat$studyid, effectsize = hierdat$effectsize,
                   var = hierdat$var, binge = hierdat$binge, sreport = hierdat$sreport,
                   males = hierdat$males, age = hierdat$age, followup = hierdat$followup)
write.csv(corr, "robumeta_corrdat.csv", row.names = FALSE)
write.csv(hier, "robumeta_hierdat.csv", row.names = FALSE)
out$robu_corr <- robu_block(robu(effectsize ~ males + college + binge, data = corr, studynum = studyid,
                                 var.eff.size = var, modelweights = "CORR", rho = 0.8, small = TRUE))
out$robu_corr_rho05 <- robu_block(robu(effectsize ~ males + college + binge, data = corr, studynum = studyid,
                                       var.eff.size = var, modelweights = "CORR", rho = 0.5, small = TRUE))
out$robu_corr_large <- robu_block(robu(effectsize ~ males + college + binge, data = corr, studynum = studyid,
                                       var.eff.size = var, modelweights = "CORR", rho = 0.8, small = FALSE))
out$robu_corr_int <- robu_block(robu(effectsize ~ 1, data = corr, studynum = studyid,
                                     var.eff.size = var, modelweights = "CORR", rho = 0.8, small = TRUE))
out$robu_hier <- robu_block(robu(effectsize ~ binge + followup + sreport + age, data = hier, studynum = studyid,
                                 var.eff.size = var, modelweights = "HIER", small = TRUE))
out$robu_hier_large <- robu_block(robu(effectsize ~ binge + followup + sreport + age, data = hier,
                                       studynum = studyid, var.eff.size = var, modelweights = "HIER",
                                       small = FALSE))
out$robu_hier_int <- robu_block(robu(effectsize ~ 1, data = hier, studynum = studyid,
                                     var.eff.size = var, modelweights = "HIER", small = TRUE))
out$robu_self_efficacy_corr <- robu_block(robu(yi ~ guided, data = se, studynum = study_id, var.eff.size = vi,
                                               modelweights = "CORR", rho = 0.8, small = TRUE))
out$robu_self_efficacy_hier <- robu_block(robu(yi ~ guided, data = se, studynum = study_id, var.eff.size = vi,
                                               modelweights = "HIER", small = TRUE))

write_json(out, "robust.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
